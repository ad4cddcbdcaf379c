import Database from "better-sqlite3";
import { prepareDatabaseFile, restrictSidecars } from "./file-modes.js";
import { MIGRATIONS } from "./migrations.js";

/**
 * Runs the migrations a database has not seen yet, one per write transaction.
 * The version is read inside the transaction, so two processes opening a new
 * file at once (a server and a CLI command) cannot both apply the same step.
 */
export function migrate(db: Database.Database): void {
  const step = db.transaction((): boolean => {
    const version = db.pragma("user_version", { simple: true }) as number;
    const migration = MIGRATIONS[version];
    if (migration === undefined) return false;
    if (typeof migration === "string") db.exec(migration);
    else migration(db);
    db.pragma(`user_version = ${version + 1}`);
    return true;
  });
  while (step.immediate()) {
    // next version
  }
}

/**
 * Opens (creating if needed) one SQLite file in WAL mode, migrated to the latest
 * schema. WAL: readers never block the writer, and a committed transaction
 * survives the process being killed at any moment (synchronous=NORMAL only
 * risks the last transactions on power loss, not on a process crash).
 */
export function openDatabase(path: string): Database.Database {
  if (path !== ":memory:") prepareDatabaseFile(path);
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  if (path !== ":memory:") restrictSidecars(path);
  migrate(db);
  return db;
}

interface PendingWrite {
  run: () => number | void;
  result?: number | void;
  resolve: (value: number | undefined) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit: every write queued in one event-loop turn goes into one
 * transaction, and each caller's promise settles only once its write is on disk,
 * so nothing is acknowledged before it is durable and a busy server pays one
 * commit per turn, not one per request.
 */
export class GroupCommit {
  private pending: PendingWrite[] = [];
  private flushScheduled = false;
  private readonly batch: (writes: PendingWrite[]) => void;

  /**
   * `hooks.beforeCommit` runs inside each transaction after its writes (the
   * writer's summed counter moves); `hooks.afterRollback` when one failed, so
   * that nothing of the rolled-back writes is kept for the next.
   */
  constructor(
    db: Database.Database,
    private readonly hooks: { beforeCommit(): void; afterRollback(): void } = { beforeCommit: () => undefined, afterRollback: () => undefined },
  ) {
    this.batch = db.transaction((writes: PendingWrite[]) => {
      for (const w of writes) w.result = w.run();
      hooks.beforeCommit();
    });
  }

  /** Queues a write for this turn's transaction; resolves with its result once it is committed. */
  write(run: () => number | void): Promise<number | undefined> {
    return new Promise((resolve, reject) => {
      this.pending.push({ run, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Resolves once every write queued so far is committed, so a read after it sees them. */
  settled(): Promise<unknown> {
    return this.write(() => undefined);
  }

  flush(): void {
    this.flushScheduled = false;
    const writes = this.pending;
    this.pending = [];
    if (writes.length === 0) return;
    try {
      this.batch(writes);
    } catch (error) {
      this.hooks.afterRollback();
      for (const w of writes) w.reject(error);
      return;
    }
    for (const w of writes) w.resolve(w.result ?? undefined);
  }
}
