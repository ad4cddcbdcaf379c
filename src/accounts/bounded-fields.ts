import { CONTROL_CHARACTER, CONTROL_CHARACTER_PROBLEM, FIELD_LIMITS } from "../api/schemas/admin.js";

export { CONTROL_CHARACTER, CONTROL_CHARACTER_PROBLEM, FIELD_LIMITS };

/** Whether `s` holds a C0 control, DEL or a C1 control: never part of a name or an e-mail. */
export const hasControlCharacter = (s: string): boolean => CONTROL_CHARACTER.test(s);

/** Format characters and whatever else Unicode says to render as nothing (combining grapheme joiner, variation selectors, fillers). */
const INVISIBLE = /[\p{Cf}\p{Default_Ignorable_Code_Point}]/u;

/**
 * A linear check that a string looks like an e-mail address: one "@", a local part
 * of 1–64 characters, a domain of two or more non-empty labels, no whitespace.
 * (A backtracking regular expression took seconds on 40,000 dots.)
 */
export function isEmailAddress(s: string): boolean {
  const at = s.indexOf("@");
  if (at <= 0 || at > 64 || at !== s.lastIndexOf("@") || /\s/.test(s)) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || (c >= 0x7f && c <= 0x9f)) return false;
  }
  // Invisible characters (zero-width spaces and joiners, direction marks): two addresses that look the same must be the same.
  if (INVISIBLE.test(s)) return false;
  let labels = 0;
  let labelStart = at + 1;
  for (let i = labelStart; i <= s.length; i++) {
    if (i === s.length || s[i] === ".") {
      const length = i - labelStart;
      if (length === 0 || length > 63) return false;
      labels++;
      labelStart = i + 1;
    }
  }
  return labels >= 2;
}
