/**
 * Waits for a condition instead of a fixed time: a sleep long enough on a quiet machine is too short on a loaded one
 * (CI), and what it waited for (a log line, a queued request) then was not there yet.
 */
export async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
