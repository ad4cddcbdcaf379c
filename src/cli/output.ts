/** What the CLI prints: one JSON document with --json, a table or a sentence otherwise. */

export const print = (text: string): void => {
  process.stdout.write(`${text}\n`);
};

export const printJson = (value: unknown): void => print(JSON.stringify(value));

/** Notes for the person at the terminal (which database, what happened) go to stderr, never into --json stdout. */
export const note = (text: string): void => {
  process.stderr.write(`${text}\n`);
};

/** Aligned columns under upper-case headers; an empty table prints its `empty` sentence instead. */
export function table(headers: readonly string[], rows: ReadonlyArray<ReadonlyArray<string>>, empty: string): string {
  if (rows.length === 0) return empty;
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: ReadonlyArray<string>): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(headers.map((h) => h.toUpperCase())), ...rows.map(line)].join("\n");
}

/** ISO timestamps shortened to minutes in UTC for tables: 2026-11-26 00:16Z. */
export const shortTime = (iso: string | null | undefined): string => (iso ? `${iso.slice(0, 10)} ${iso.slice(11, 16)}Z` : "-");
