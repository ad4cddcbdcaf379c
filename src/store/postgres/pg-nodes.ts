import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type pg from "pg";
import type { Plan } from "../../gate/plans.js";
import { NOT_DELIVERED } from "../../metering/counting-rule.js";
import { inTransaction } from "./pg-pool.js";
import { FINISH_ORPHANS, outcomeParams } from "./pg-ledger.js";

/** A node whose plan table is not the one the running nodes share. */
export class PlanTableMismatchError extends Error {
  constructor(differences: string) {
    super(
      `this node's plan table (plans in its config file) differs from the one recorded in PostgreSQL by the nodes running now (${differences}); ` +
        "give every node the same config file (to change plans, stop every node, then start them with the new file)",
    );
    this.name = "PlanTableMismatchError";
  }
}

/** A node or CLI whose ALVEARE_REDIS_PREFIX is not the one the running nodes use: its revocations would reach no node. */
export class RedisPrefixMismatchError extends Error {
  constructor(mine: string, recorded: string) {
    super(
      `ALVEARE_REDIS_PREFIX is '${mine}' here but the running nodes use '${recorded}' (recorded in PostgreSQL); ` +
        "give every node and the CLI the same prefix (to change it, stop every node, then start them with the new one)",
    );
    this.name = "RedisPrefixMismatchError";
  }
}

const LIVE_NODE = "SELECT 1 FROM nodes WHERE lease_until >= now() LIMIT 1";

/** Whether some node holds a live lease now. */
export const anyNodeServing = async (pool: pg.Pool): Promise<boolean> => (await pool.query(LIVE_NODE)).rows.length > 0;

/**
 * Checks a Redis prefix against the one recorded by the running nodes; a
 * serving node records its own when it differs and no node runs (the first
 * start, or a change with every node stopped). The CLI only checks.
 */
export async function checkRedisPrefix(client: pg.PoolClient, prefix: string, record: boolean): Promise<void> {
  const recorded = (await client.query<{ prefix: string }>("SELECT prefix FROM redis_prefix WHERE id = 1")).rows[0]?.prefix;
  if (recorded === prefix) return;
  if (recorded !== undefined && (await client.query(LIVE_NODE)).rows.length > 0) throw new RedisPrefixMismatchError(prefix, recorded);
  if (!record) return;
  await client.query(
    `INSERT INTO redis_prefix (id, prefix, recorded_at) VALUES (1, $1, $2)
     ON CONFLICT (id) DO UPDATE SET prefix = excluded.prefix, recorded_at = excluded.recorded_at`,
    [prefix, new Date().toISOString()],
  );
}

/**
 * The plan table the serving nodes recorded, for a CLI given no config file:
 * it then knows the plans the nodes serve (custom ones included) without the
 * servers' file. Undefined when no node ever recorded one.
 */
export async function recordedPlans(pool: pg.Pool): Promise<Record<string, Plan> | undefined> {
  const recorded = (await pool.query<{ plans: string }>("SELECT plans FROM plan_table WHERE id = 1")).rows[0]?.plans;
  if (recorded === undefined) return undefined;
  const plans = Object.values(JSON.parse(recorded) as Record<string, unknown>);
  // Written by a node of another release, the table may not have this release's shape: then it is not used.
  if (!plans.every(isPlan)) return undefined;
  // The record's keys are sorted by name; plans read better smallest first. No prototype, as the config's own
  // table: a lookup by any name finds only these plans.
  plans.sort((a, b) => a.requestsPerMonth - b.requestsPerMonth);
  return Object.assign(Object.create(null) as Record<string, Plan>, Object.fromEntries(plans.map((plan) => [plan.name, plan])));
}

const isCount = (value: unknown): boolean => typeof value === "number" && Number.isFinite(value) && value >= 0;
const isOptionalCount = (value: unknown): boolean => value === undefined || isCount(value);
function isPlan(value: unknown): value is Plan {
  const p = value as Partial<Record<keyof Plan, unknown>> | null;
  return (
    typeof p === "object" &&
    p !== null &&
    typeof p.name === "string" &&
    [p.requestsPerWindow, p.windowMs, p.requestsPerMonth, p.maxKeys].every(isCount) &&
    [p.tokensPerWindow, p.maxConcurrentRequests].every(isOptionalCount) &&
    (p.specialists === "*" || (Array.isArray(p.specialists) && p.specialists.every((s) => typeof s === "string")))
  );
}

/** A plan's fields as its config file names them, for messages; the window in seconds. */
const PLAN_FIELDS: Readonly<Record<string, string>> = {
  requestsPerWindow: "requests_per_minute",
  windowMs: "window_seconds",
  requestsPerMonth: "requests_per_month",
  maxKeys: "max_keys",
  tokensPerWindow: "tokens_per_minute",
  maxConcurrentRequests: "max_concurrent_requests",
};
/** How many differences a message names before it counts the rest. */
const DIFFERENCES_NAMED = 3;

/**
 * What differs between this plan table and the running nodes', in a few words, so that an operator
 * finds the wrong file or field: "plan 'pro' only here; plan 'tiny': requests_per_month 12 here, 20 in theirs".
 */
export function planTableDifferences(mine: unknown, theirs: unknown): string {
  const table = (t: unknown): Record<string, Record<string, unknown>> =>
    t !== null && typeof t === "object" ? (t as Record<string, Record<string, unknown>>) : {};
  const [a, b] = [table(mine), table(theirs)];
  const shown = (field: string, value: unknown): string =>
    value === undefined ? "unset" : field === "windowMs" && typeof value === "number" ? String(value / 1000) : JSON.stringify(value);
  const differences: string[] = [];
  for (const name of Object.keys(a)) if (!Object.hasOwn(b, name)) differences.push(`plan '${name}' only here`);
  for (const name of Object.keys(b)) if (!Object.hasOwn(a, name)) differences.push(`plan '${name}' only in theirs`);
  for (const name of Object.keys(a).filter((n) => Object.hasOwn(b, n))) {
    const [pa, pb] = [table(a[name]), table(b[name])];
    for (const field of [...new Set([...Object.keys(pa), ...Object.keys(pb)])].sort()) {
      if (canonicalJson(pa[field]) === canonicalJson(pb[field])) continue;
      differences.push(`plan '${name}': ${PLAN_FIELDS[field] ?? field} ${shown(field, pa[field])} here, ${shown(field, pb[field])} in theirs`);
    }
  }
  const more = differences.length - DIFFERENCES_NAMED;
  return differences.slice(0, DIFFERENCES_NAMED).join("; ") + (more > 0 ? `; and ${more} more` : "");
}

/** JSON with object keys sorted, so two equal plan tables read the same whatever order their files list them in. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

export const JOIN_LOCK = "SELECT pg_advisory_xact_lock(hashtext('alveare.nodes'))";
const SETTLE_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('alveare.settle')) AS locked";

/**
 * A serving node's lease in the shared database. The node renews it every
 * third of its length; a node that stops renewing (killed, cut off) is dead
 * once the lease runs out, by the database's clock, so nodes' clocks never
 * matter. Every live node settles, at each renewal, the unfinished ledger rows
 * of dead nodes: their clients received nothing, so the rows are closed as not
 * delivered and given back, the outcome SQLite's start-up settling gives.
 */
export class NodeLease {
  readonly id = `node_${randomBytes(8).toString("hex")}`;
  private timer: NodeJS.Timeout | undefined;
  private renewing: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly pool: pg.Pool,
    private readonly leaseMs: number,
    /** Told how many rows a settling closed, when any (the server logs it). */
    private readonly onSettled: (count: number) => void = () => undefined,
  ) {}

  /**
   * Checks the plan table against the recorded one and registers the node, in
   * one transaction under a lock, so two nodes starting with different tables
   * cannot both pass. The first node records its table; a later one must match
   * it while any node runs; once every node is gone the next start records anew.
   */
  async join(plans: unknown | undefined, redisPrefix?: string): Promise<void> {
    await inTransaction(this.pool, async (client) => {
      await client.query(JOIN_LOCK);
      if (redisPrefix !== undefined) await checkRedisPrefix(client, redisPrefix, true);
      if (plans !== undefined) {
        const table = canonicalJson(plans);
        const recorded = (await client.query<{ plans: string }>("SELECT plans FROM plan_table WHERE id = 1")).rows[0]?.plans;
        if (recorded !== table) {
          const live = await client.query(LIVE_NODE);
          if (recorded !== undefined && live.rows.length > 0) throw new PlanTableMismatchError(planTableDifferences(plans, JSON.parse(recorded)));
          await client.query(
            `INSERT INTO plan_table (id, plans, recorded_at) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET plans = excluded.plans, recorded_at = excluded.recorded_at`,
            [table, new Date().toISOString()],
          );
        }
      }
      await this.renew(client, new Date().toISOString());
    });
  }

  private renew(client: pg.Pool | pg.PoolClient, startedAt: string): Promise<unknown> {
    return client.query(
      `INSERT INTO nodes (id, host, pid, started_at, lease_until) VALUES ($1, $2, $3, $4, now() + $5 * interval '1 millisecond')
       ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until`,
      [this.id, hostname(), process.pid, startedAt, this.leaseMs],
    );
  }

  /** Renews the lease, settles dead nodes' rows and then runs `alsoEachTick` (the node's own sweep) every third of the lease, until stopped. */
  start(alsoEachTick: () => Promise<unknown> = async () => undefined): void {
    const tick = (): void => {
      this.renewing = this.renew(this.pool, new Date().toISOString())
        .then(() => this.settleDead())
        .then(alsoEachTick)
        // The database being away is reported by the requests that need it; the next tick tries again.
        .catch(() => undefined);
    };
    this.timer = setInterval(tick, Math.max(100, Math.floor(this.leaseMs / 3)));
    this.timer.unref();
  }

  /** Settles the unfinished rows of nodes whose lease ran out; one node at a time does it. Returns how many. */
  async settleDead(): Promise<number> {
    const settled = await inTransaction(this.pool, async (client) => {
      const { rows } = await client.query<{ locked: boolean }>(SETTLE_LOCK);
      if (rows[0]?.locked !== true) return 0;
      const outcome = { status: NOT_DELIVERED, promptTokens: 0, completionTokens: 0, latencyMs: null, at: new Date().toISOString() };
      const settled = await client.query<{ n: number }>(FINISH_ORPHANS, [...outcomeParams(outcome), this.id]);
      // Dead nodes with nothing left to settle are forgotten after a day; their rows keep the id.
      await client.query("DELETE FROM nodes WHERE lease_until < now() - interval '1 day'");
      return settled.rows.reduce((sum, row) => sum + row.n, 0);
    });
    if (settled > 0) this.onSettled(settled);
    return settled;
  }

  /** Stops renewing and gives the lease up, so nothing of this node is left for others to wait on. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.renewing;
    await this.pool.query("DELETE FROM nodes WHERE id = $1", [this.id]).catch(() => undefined);
  }
}
