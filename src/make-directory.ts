import { existsSync, lstatSync, mkdirSync, readlinkSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";

/**
 * `mkdir -p`, one level at a time. Node's recursive mkdir loops for ever when
 * a directory exists but refuses children with ENOENT (/proc, /sys): here the
 * first refusal is thrown, so a bad data dir is an error, not a hang.
 */
export function makeDirectorySync(dir: string, mode?: number): void {
  for (const level of missingLevels(dir)) {
    try {
      mkdirSync(level, { mode });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? String(error);
      // EEXIST for a level that did not exist a moment ago: made meanwhile (fine), or an entry that is no directory.
      const problem = code === "EEXIST" ? notADirectory(level) : `could not be made (${code})`;
      if (problem !== undefined) throw new Error(`cannot make the directory ${resolve(dir)}: ${level} ${problem}`, { cause: error });
    }
  }
}

/** Why `level`, which exists as an entry, is not a directory to go on with; undefined when it is one. */
function notADirectory(level: string): string | undefined {
  try {
    return statSync(level).isDirectory() ? undefined : "exists and is not a directory";
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    // existsSync follows links: a dangling one reads as missing, then refuses mkdir with EEXIST.
    if (lstatSync(level, { throwIfNoEntry: false })?.isSymbolicLink() === true)
      return `is a symbolic link to ${linkTarget(level)}, which ${code === "ELOOP" ? "loops" : "does not exist"} (${code})`;
    return `could not be made (${code})`;
  }
}

function linkTarget(link: string): string {
  try {
    return readlinkSync(link);
  } catch {
    return "a target that cannot be read";
  }
}

/** The directories from the deepest existing ancestor of `dir` (excluded) down to `dir`. */
function missingLevels(dir: string): string[] {
  const missing: string[] = [];
  for (let d = resolve(dir); !existsSync(d); d = dirname(d)) {
    missing.unshift(d);
    if (dirname(d) === d) break;
  }
  return missing;
}
