/**
 * PostgreSQL text cannot hold U+0000: a parameter with one fails the whole
 * statement ("invalid byte sequence for encoding UTF8: 0x00"). No stored row can
 * hold one either, so a lookup by such a value finds nothing, as it would on
 * SQLite, and answers so without asking the database.
 */
export const holdsNul = (...values: ReadonlyArray<string | null | undefined>): boolean =>
  values.some((v) => typeof v === "string" && v.includes("\u0000"));
