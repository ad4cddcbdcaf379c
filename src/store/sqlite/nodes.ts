import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";

/** The process that admits requests through one store: each ledger row names the node that wrote it. */
export interface NodeIdentity {
  id: string;
  host: string;
  pid: number;
  /** When the process started (Linux); pids are reused, a pid with its start time is not. */
  processStart: string | null;
}

export interface NodeRow {
  id: string;
  host: string;
  pid: number;
  process_start: string | null;
}

/** Field 22 of /proc/PID/stat: the start time in clock ticks since boot; null where there is no /proc. */
function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is parenthesised and may hold spaces; fields after it start at 3.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[22 - 3] ?? null;
  } catch {
    return null;
  }
}

/** Nodes of stores open in this process, which are alive whatever their pid says. */
const openHere = new Set<string>();

export function thisNode(): NodeIdentity {
  const node = { id: `node_${randomBytes(8).toString("hex")}`, host: hostname(), pid: process.pid, processStart: processStart(process.pid) };
  openHere.add(node.id);
  return node;
}

export const nodeClosed = (id: string): void => {
  openHere.delete(id);
};

/**
 * Whether the process behind a node may still complete its requests. In the
 * embedded mode one server serves a data dir, so a node of another host is a
 * previous container of this one; on this host the process must still exist
 * (and, where the OS says, be the same process and not a reused pid).
 */
export function nodeAlive(node: NodeRow | undefined): boolean {
  if (node === undefined || node.host !== hostname()) return false;
  if (node.pid === process.pid) return openHere.has(node.id);
  if (node.process_start !== null) return processStart(node.pid) === node.process_start;
  try {
    process.kill(node.pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
