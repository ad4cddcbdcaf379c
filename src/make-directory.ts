import { existsSync, mkdirSync } from "node:fs";
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
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "EEXIST")
        throw new Error(`cannot make the directory ${resolve(dir)}: ${level} could not be made (${code ?? String(error)})`, { cause: error });
    }
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
