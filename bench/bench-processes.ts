import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** User plus system CPU seconds the process has used so far (from /proc, so the load generator's own CPU is not in it). */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** The same for the process's main thread alone (for Node, the event loop: what bounds one server's throughput). */
export function mainThreadCpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/task/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/**
 * Seconds the main thread spent waiting for a CPU while it could have run (`/proc/PID/task/PID/schedstat`, its
 * second field): on a machine shared with the load generator and the upstream, a server's event loop may be
 * ready and still not running. Such time counts as neither its CPU nor its idleness.
 */
export function mainThreadRunQueueSeconds(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, "utf8").split(" ")[1]) / 1e9;
}

/** User plus system CPU seconds of this process's children that have exited and been waited for. */
export function reapedChildrenCpuSeconds(): number {
  const fields = readFileSync("/proc/self/stat", "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[13]) + Number(fields[14])) / TICKS_PER_SECOND;
}

/**
 * Starts `node ...args` and resolves once its output (stdout or stderr) matches
 * `ready`; after that its output is drained without being kept, as a log
 * collector would, so a chatty server neither blocks nor grows the bench's memory.
 */
export function startProcess(args: string[], env: NodeJS.ProcessEnv = process.env, ready: RegExp = /ready/): Promise<ChildProcess> {
  const child = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  return new Promise((resolve, reject) => {
    let seen = "";
    const onData = (c: Buffer): void => {
      seen += c.toString();
      if (!ready.test(seen)) return;
      for (const s of [child.stdout!, child.stderr!]) s.removeListener("data", onData).resume();
      resolve(child);
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.on("exit", (code) => reject(new Error(`${args.join(" ")} exited ${code}: ${seen.slice(-2000)}`)));
  });
}
