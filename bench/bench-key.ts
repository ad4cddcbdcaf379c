import { spawnSync } from "node:child_process";

const CLI = new URL("../src/cli/main.js", import.meta.url).pathname;

/** A scale-plan account and live key in `dataDir`, made through the CLI, so benchmarks measure the gated path. */
export function benchKey(dataDir: string): string {
  const run = (args: string[]) =>
    JSON.parse(spawnSync(process.execPath, [CLI, ...args, "--data-dir", dataDir, "--json"], { encoding: "utf8" }).stdout) as Record<string, string>;
  const account = run(["accounts", "create", "--name", "bench", "--plan", "scale"]);
  return run(["keys", "create", "--account", account.id!]).key!;
}
