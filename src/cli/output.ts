/** What the CLI prints: one JSON document with --json, a table or a sentence otherwise. */

export const print = (text: string): void => {
  process.stdout.write(`${text}\n`);
};

export const printJson = (value: unknown): void => print(JSON.stringify(value));

/** Notes for the person at the terminal (which database, what happened) go to stderr, never into --json stdout. */
export const note = (text: string): void => {
  process.stderr.write(`${text}\n`);
};

/**
 * `value` with each control character (C0, DEL, C1) written as \u001b: a name stored by
 * an older version, or an id someone typed, cannot clear the operator's screen,
 * move the cursor, forge a line or ring the bell.
 */
export const visible = (value: string): string =>
  value.replace(/[\u0000-\u001f\u007f-\u009f]/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);

/** Aligned columns under upper-case headers, every cell `visible`; an empty table prints its `empty` sentence instead. */
export function table(headers: readonly string[], values: ReadonlyArray<ReadonlyArray<string>>, empty: string): string {
  if (values.length === 0) return empty;
  const rows = values.map((r) => r.map(visible));
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
