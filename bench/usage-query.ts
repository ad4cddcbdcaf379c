/**
 * The cost of a usage report on a big ledger: the queries behind GET /v1/usage
 * (and the dashboard's daily chart) on the aggregate tables, against the old
 * queries that grouped the ledger itself, on the same file in the same run.
 * Usage: node dist/bench/usage-query.js [--rows 1000000] [--runs 5]
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import { MIGRATIONS } from "../src/store/sqlite/migrations.js";
import { createStore } from "../src/store/create-store.js";
import { USAGE_QUERIES } from "../src/store/sqlite/usage-queries.js";

const { values } = parseArgs({ options: { rows: { type: "string", default: "1000000" }, runs: { type: "string", default: "5" } } });
const ROWS = Number(values.rows);
const RUNS = Number(values.runs);
const ACCOUNT = "acct_big";
const PERIOD = "2026-11";
const SPECIALISTS = ["classify", "summarise", "extract", "qa", "chat"];

/** The ledger queries /v1/usage and the chart ran before the aggregates (status filters as they were). */
const OLD = {
  counter: USAGE_QUERIES.counter,
  bySpecialist: `SELECT specialist, COUNT(*) AS n FROM usage_events
    WHERE account_id = ? AND mode = ? AND period = ? AND (status IS NULL OR status < 500)
    GROUP BY specialist ORDER BY n DESC, specialist`,
  daily: `SELECT substr(created_at, 1, 10) AS day, COUNT(*) AS n FROM usage_events
    WHERE account_id = ? AND mode = ? AND period = ? AND (status IS NULL OR status < 400 OR status = 499)
    GROUP BY day ORDER BY day`,
};

/** A database as the previous version left it: schema 2 and a ledger of ROWS requests this month. */
function oldDatabase(path: string): void {
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  for (const migration of MIGRATIONS.slice(0, 2)) db.exec(migration as string);
  db.pragma("user_version = 2");
  db.prepare("INSERT INTO accounts (id, name, plan, created_at) VALUES (?, 'big', 'scale', '2026-01-01')").run(ACCOUNT);
  const insert = db.prepare(
    `INSERT INTO usage_events (request_id, account_id, key_id, mode, period, endpoint, specialist, prompt_tokens, completion_tokens, status, latency_ms, created_at, finished_at)
     VALUES (?, ?, 'key_x', 'live', ?, 'infer', ?, 20, 12, ?, 40, ?, ?)`,
  );
  let counted = 0;
  db.transaction(() => {
    for (let i = 0; i < ROWS; i++) {
      const status = i % 50 === 0 ? 500 : i % 37 === 0 ? 400 : 200;
      if (status === 200) counted++;
      const at = `${PERIOD}-${String(1 + (i % 30)).padStart(2, "0")}T12:00:00.000Z`;
      insert.run(`req_${i}`, ACCOUNT, PERIOD, SPECIALISTS[i % SPECIALISTS.length], status, at, at);
    }
  })();
  db.prepare("INSERT INTO usage_counters (account_id, mode, period, requests, tokens) VALUES (?, 'live', ?, ?, ?)").run(
    ACCOUNT,
    PERIOD,
    counted,
    counted * 32,
  );
  db.close();
}

/** Median milliseconds of `runs` calls. */
function time(runs: number, run: () => unknown): number {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    run();
    samples.push(performance.now() - start);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)]!;
}

const path = join(mkdtempSync(join(tmpdir(), "alveare-bench-usage-")), "alveare.db");
let started = performance.now();
oldDatabase(path);
const writeMs = performance.now() - started;
started = performance.now();
await (await createStore({ dataDir: dirname(path) })).close(); // runs migration 3: backfills the aggregates from the ledger
const migrateMs = performance.now() - started;

const db = new Database(path, { readonly: true });
const args = [ACCOUNT, "live", PERIOD] as const;
const usageOf = (queries: typeof OLD) => {
  const counter = db.prepare(queries.counter);
  const bySpecialist = db.prepare(queries.bySpecialist);
  return () => [counter.get(...args), bySpecialist.all(...args)];
};
const chartOf = (sql: string) => {
  const daily = db.prepare(sql);
  return () => daily.all(...args);
};
// The chart's rule did not change, so both must draw the same chart before either is timed (the old
// by_specialist also counted 4xx given back, the inconsistency the counting rule removed).
const oldChart = JSON.stringify(chartOf(OLD.daily)());
if (oldChart !== JSON.stringify(chartOf(USAGE_QUERIES.daily)())) throw new Error("the aggregates disagree with the ledger");

const rows = [
  { query: "GET /v1/usage (counter + by_specialist)", old: time(RUNS, usageOf(OLD)), now: time(RUNS * 200, usageOf(USAGE_QUERIES)) },
  { query: "dashboard daily chart", old: time(RUNS, chartOf(OLD.daily)), now: time(RUNS * 200, chartOf(USAGE_QUERIES.daily)) },
];
db.close();

const print = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
print(
  `ledger: ${ROWS.toLocaleString("en")} requests in one account and month (written in ${(writeMs / 1000).toFixed(1)} s); migration 3 backfilled the aggregates in ${(migrateMs / 1000).toFixed(1)} s\n`,
);
print("| query | ledger scan (before) ms | aggregates ms | speed-up |");
print("|---|---|---|---|");
for (const r of rows) print(`| ${r.query} | ${r.old.toFixed(1)} | ${r.now.toFixed(3)} | ${Math.round(r.old / r.now).toLocaleString("en")}× |`);
