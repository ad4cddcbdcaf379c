import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Directories not removed yet: removed when the process exits without closing them (a second Ctrl-C, a signal during start-up). */
const open = new Set<string>();

/** Never throws: it runs at exit (a native save may still be writing there) and at close, where a leftover must not fail the rest. */
function remove(directory: string): void {
  try {
    rmSync(directory, { recursive: true, force: true, maxRetries: 2 });
  } catch {
    // Left in the temp dir, which the OS clears.
  }
}

function removeOpen(): void {
  for (const directory of open) remove(directory);
  open.clear();
}

/**
 * A new private directory under the system's temp directory for sequence
 * states (files that hold prompt-derived state: 0700), removed by
 * `removeStateDirectory` or, failing that, when the process exits.
 */
export function makeStateDirectory(prefix: string): string {
  const directory = mkdtempSync(join(tmpdir(), prefix));
  // mkdtemp already creates it 0700; say so explicitly since the files hold prompt-derived state.
  chmodSync(directory, 0o700);
  if (!process.listeners("exit").includes(removeOpen)) process.once("exit", removeOpen);
  open.add(directory);
  return directory;
}

export function removeStateDirectory(directory: string): void {
  remove(directory);
  open.delete(directory);
}
