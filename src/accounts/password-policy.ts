import { errors } from "../errors.js";

const MIN_PASSWORD_LENGTH = 12;
const MAX_PASSWORD_LENGTH = 1024;

/**
 * Passwords of the allowed length that appear near the top of every leaked-password
 * list; a guesser tries these first, so they are refused whatever their case.
 */
const COMMON_PASSWORDS: ReadonlySet<string> = new Set([
  "123456789012",
  "1234567890123",
  "12345678901234",
  "123456789123",
  "1234567890qwerty",
  "qwertyuiop12",
  "qwerty123456",
  "qwertyuiopasdf",
  "qwertyqwerty",
  "1q2w3e4r5t6y",
  "1qaz2wsx3edc",
  "zaq12wsxcde3",
  "password1234",
  "password12345",
  "password123456",
  "passwordpassword",
  "password1234567",
  "p@ssw0rd1234",
  "iloveyou1234",
  "letmein12345",
  "welcome12345",
  "welcome123456",
  "changeme1234",
  "administrator",
  "admin1234567",
  "adminadmin12",
  "abcdefghijkl",
  "abcdefghijklm",
  "abcd12345678",
  "abc123456789",
  "football1234",
  "baseball1234",
  "monkey123456",
  "dragon123456",
  "sunshine1234",
  "princess1234",
  "trustno11234",
  "superman1234",
  "starwars1234",
  "whatever1234",
  "masterkey123",
  "correcthorsebatterystaple",
  "correct horse battery staple",
  "alveare12345",
  "alveare123456",
  "alvearealveare",
]);

/**
 * Words that, dressed up with a capital and a few digits or symbols
 * ("Password123!", "Welcome2024!"), are still among a guesser's first tries.
 */
const COMMON_WORDS: ReadonlySet<string> = new Set([
  "password",
  "passw",
  "welcome",
  "letmein",
  "iloveyou",
  "admin",
  "administrator",
  "changeme",
  "qwerty",
  "monkey",
  "dragon",
  "sunshine",
  "princess",
  "football",
  "baseball",
  "superman",
  "starwars",
  "whatever",
  "master",
  "secret",
  "alveare",
]);

/** The letter rows of a QWERTY keyboard run together: a walk along them is a guesser's early try. */
const KEYBOARD = "qwertyuiopasdfghjklzxcvbnm";

/** Non-letters a common word may be dressed in and still be guessed early. */
const SHORT_DRESSING = 6;

/**
 * Refuses the weakest passwords with a 400 naming `password`: too short or too
 * long, fewer than four different characters (whitespace, "zzzz…", "1212…"), a
 * well-known password, one piece repeated (a guesser doubles every word it
 * tries), or a common word or keyboard walk dressed in a few digits or symbols.
 */
export function checkPasswordPolicy(password: string): void {
  const refuse = (why: string) => errors.invalidParameter("password", why);
  // A lone surrogate is hashed as U+FFFD (the password is UTF-8 before derivation): twelve different ones would be one character twelve times.
  if (/\p{Cs}/u.test(password)) throw refuse("must be valid Unicode text (it holds a lone surrogate, \\ud800–\\udfff).");
  if (password.length < MIN_PASSWORD_LENGTH) throw refuse(`must be at least ${MIN_PASSWORD_LENGTH} characters.`);
  if (password.length > MAX_PASSWORD_LENGTH) throw refuse(`must be at most ${MAX_PASSWORD_LENGTH} characters.`);
  if (password.trim().length === 0) throw refuse("must not be only whitespace.");
  if (new Set(password).size < 4) throw refuse("must hold at least four different characters.");
  if (COMMON_PASSWORDS.has(password.toLowerCase())) throw refuse("is one of the most common passwords; choose another.");
  if (/^(.+?)\1+$/su.test(password)) throw refuse("is one short piece repeated (as in 'hunter2hunter2'); choose a longer phrase.");
  const letters = password.toLowerCase().replace(/[^a-z]/g, "");
  const dressing = password.length - letters.length;
  const walk = letters.length >= 6 && KEYBOARD.includes(letters);
  if (dressing <= SHORT_DRESSING && (COMMON_WORDS.has(letters) || walk)) {
    throw refuse("is a common word or keyboard walk with a few digits or symbols; choose a longer phrase.");
  }
}
