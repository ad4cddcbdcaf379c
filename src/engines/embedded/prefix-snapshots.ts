import { createHash } from "node:crypto";
import { rmSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { Token } from "node-llama-cpp";
import type { Logger } from "pino";
import { PromptAbandoned } from "./prompt-abandoned.js";
import { makeStateDirectory, removeStateDirectory } from "./state-directories.js";

/** What the store needs from the sequence a snapshot is loaded into or made from. */
export interface SnapshotTarget {
  /** Replaces the sequence's state with the snapshot file's. */
  load(path: string): Promise<void>;
  /** Evaluates the prefix on the sequence (the first time it is needed). */
  evaluate(): Promise<void>;
  /** Saves the sequence's state (exactly the prefix) to `path`; resolves to the file's size. */
  save(path: string): Promise<number>;
  /** Ends a wait for another request's build of the same prefix (PromptAbandoned), so a request whose client left frees its sequence; aborted, nothing is loaded. */
  signal?: AbortSignal;
}

/** Loaded from its snapshot; evaluated and snapshotted; or evaluated only (its snapshot is larger than the whole budget). */
type Placement = "restored" | "built" | "evaluated";

/** How many prefixes too large to keep are remembered (a key is ~50 bytes); past it the list starts again. */
const MAX_TOO_LARGE_REMEMBERED = 1024;

interface Snapshot {
  path: string;
  tokens: number;
  bytes: number;
  /** Loads in progress; an entry in use is never evicted, and its file outlives its removal until they end. */
  users: number;
  /** Removed while in use: its file goes when the last load ends. */
  removed?: boolean;
}

/**
 * A snapshot's key: the engine's identity (model file, adapter, context) and the
 * prefix's tokens. A changed system prompt, chat template, model or adapter gives
 * a different key, so a stale snapshot can never be loaded.
 */
export function snapshotKey(engineIdentity: string, prefix: readonly Token[]): string {
  const hash = createHash("sha256").update(engineIdentity).update("\u0000");
  hash.update(new Uint8Array(Uint32Array.from(prefix).buffer));
  return hash.digest("hex");
}

/**
 * KV-cache snapshots of specialists' system prefixes, as llama.cpp sequence state
 * files in a private directory, so that a prefix is evaluated once and then
 * loaded into whichever sequence a request gets. Bounded by a byte budget,
 * least recently used first out; pinned prefixes (the specialists' own) only
 * once no other is left, so callers' own system prompts cannot flush them.
 */
export class PrefixSnapshotStore {
  readonly directory: string;
  private readonly entries = new Map<string, Snapshot>();
  private readonly building = new Map<string, Promise<void>>();
  private readonly pinned = new Set<string>();
  /** Prefixes whose snapshot was larger than the whole budget: evaluated each time, never saved again only to be dropped. */
  private readonly tooLarge = new Set<string>();
  private bytes = 0;
  private files = 0;
  private closed = false;

  constructor(
    private readonly budgetBytes: number,
    private readonly logger: Logger,
  ) {
    this.directory = makeStateDirectory("alveare-prefix-");
  }

  get budget(): number {
    return this.budgetBytes;
  }
  get totalBytes(): number {
    return this.bytes;
  }
  get size(): number {
    return this.entries.size;
  }
  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** A pinned prefix that changed (a template writing today's date): the new one is kept as the old one was, the old one no more. */
  repin(previous: string, next: string): void {
    if (this.pinned.delete(previous)) this.pinned.add(next);
  }

  /** Evicts `key`'s snapshot (now or whenever it is built again) only after every unpinned one. */
  pin(key: string): void {
    this.pinned.add(key);
  }

  /**
   * Puts the prefix with `key` into a sequence: loads its snapshot when there is
   * one (waiting for a build of the same prefix already under way), otherwise
   * evaluates it there and keeps a snapshot for next time.
   */
  async place(key: string, tokens: number, target: SnapshotTarget): Promise<Placement> {
    for (;;) {
      // A request aborted already (before it came here, or while it waited for a build) loads nothing: its
      // sequence keeps what it held, which is what the request is metered with (see PromptAbandoned).
      if (target.signal?.aborted === true) throw new PromptAbandoned();
      const entry = this.entries.get(key);
      if (entry !== undefined) {
        if (await this.load(key, entry, target)) return "restored";
        continue;
      }
      const pending = this.building.get(key);
      if (pending === undefined) break;
      await untilDoneOrAborted(pending, target.signal);
    }
    if (this.tooLarge.has(key)) {
      await target.evaluate();
      return "evaluated";
    }
    // No await between the check above and this registration: one build per key.
    let finished!: () => void;
    this.building.set(key, new Promise<void>((resolve) => (finished = resolve)));
    try {
      await target.evaluate();
      return (await this.save(key, tokens, target)) ? "built" : "evaluated";
    } finally {
      this.building.delete(key);
      finished();
    }
  }

  private async load(key: string, entry: Snapshot, target: SnapshotTarget): Promise<boolean> {
    // Most recently used last in the map's order.
    this.entries.delete(key);
    this.entries.set(key, entry);
    entry.users++;
    try {
      await target.load(entry.path);
      return true;
    } catch (error) {
      this.logger.warn({ err: error, tokens: entry.tokens }, "prefix snapshot could not be loaded; evaluating the prefix instead");
      this.remove(key, entry);
      return false;
    } finally {
      if (--entry.users === 0 && entry.removed === true) rmSync(entry.path, { force: true });
      this.evict();
    }
  }

  /** Saves the prefix's snapshot; false when none is kept. */
  private async save(key: string, tokens: number, target: SnapshotTarget): Promise<boolean> {
    if (this.closed) return false;
    const path = join(this.directory, `${++this.files}.state`);
    let bytes: number;
    try {
      bytes = await target.save(path);
    } catch (error) {
      // The prefix is evaluated in this sequence already; only the snapshot is lost.
      this.logger.warn({ err: error, tokens }, "prefix snapshot could not be saved");
      await rm(path, { force: true });
      return false;
    }
    if (this.closed || bytes > this.budgetBytes) {
      if (!this.closed) {
        this.logger.warn(
          { tokens, bytes, budgetBytes: this.budgetBytes },
          "prefix snapshot is larger than the whole budget; not kept, and this prefix is evaluated each time from now on",
        );
        if (this.tooLarge.size >= MAX_TOO_LARGE_REMEMBERED) this.tooLarge.clear();
        this.tooLarge.add(key);
      }
      await rm(path, { force: true });
      return false;
    }
    this.entries.set(key, { path, tokens, bytes, users: 0 });
    this.bytes += bytes;
    this.evict();
    this.logger.info({ tokens, bytes, totalBytes: this.bytes, snapshots: this.entries.size, directory: this.directory }, "prefix snapshot saved");
    return true;
  }

  private evict(): void {
    for (const sparePinned of [true, false]) {
      for (const [key, entry] of this.entries) {
        if (this.bytes <= this.budgetBytes) return;
        if (entry.users > 0 || (sparePinned && this.pinned.has(key))) continue;
        this.remove(key, entry);
        const fields = { tokens: entry.tokens, bytes: entry.bytes, totalBytes: this.bytes, snapshots: this.entries.size };
        this.logger.info({ ...fields, pinned: this.pinned.has(key) }, "prefix snapshot evicted");
      }
    }
  }

  private remove(key: string, entry: Snapshot): void {
    if (this.entries.get(key) !== entry) return;
    this.entries.delete(key);
    this.bytes -= entry.bytes;
    // A load that failed says nothing of the others still reading the same file.
    if (entry.users > 0) entry.removed = true;
    else rmSync(entry.path, { force: true });
  }

  /** Deletes every snapshot and the directory (call after the engines using it are closed). */
  close(): void {
    this.closed = true;
    this.entries.clear();
    this.bytes = 0;
    removeStateDirectory(this.directory);
  }
}

/** Waits for a build (which never rejects), or throws PromptAbandoned as soon as `signal` aborts. */
function untilDoneOrAborted(build: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (signal === undefined) return build;
  if (signal.aborted) return Promise.reject(new PromptAbandoned());
  return new Promise((resolve, reject) => {
    const abandon = (): void => reject(new PromptAbandoned());
    signal.addEventListener("abort", abandon, { once: true });
    void build.then(() => {
      signal.removeEventListener("abort", abandon);
      resolve();
    });
  });
}
