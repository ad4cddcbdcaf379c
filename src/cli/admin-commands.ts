import { existsSync, rmdirSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { DEFAULT_REDIS_PREFIX, type ServerConfig } from "../config/config.js";
import { accountJson, createdKeyJson, invitationJson, keyJson, memberJson } from "../api/resources.js";
import { People } from "../accounts/people.js";
import { AccountService } from "../accounts/accounts.js";
import { KEY_MODES } from "../gate/credentials.js";
import { usageReport } from "../metering/usage-report.js";
import { createStore, storeLocation } from "../store/create-store.js";
import type { ApiKeyRecord, Mode, Stores } from "../store/store.js";
import { CLI_CONTEXT } from "../store/audit-log.js";
import { auditPageJson, parseAuditQuery } from "../admin/audit-query.js";
import { loadCliConfig } from "./cli-config.js";
import { nodeBroadcast } from "./node-broadcast.js";
import { NotFoundError, RuntimeError, UsageError } from "./exit.js";
import { ApiError } from "../errors.js";
import { canonicalJson, planTableDifferences } from "../store/postgres/pg-nodes.js";
import { note, print, printJson, shortTime, table, visible } from "./output.js";
import { findPlan, reportedPlan } from "../gate/plans.js";

interface StoreOptions {
  json?: boolean;
  dataDir?: string;
  config?: string;
}

/** Where a command run from another directory (another ./data), or without the shared mode's two variables, should have looked. */
export const OTHER_DATA_DIR_HINT =
  "if the server uses another, pass its data directory with --data-dir or ALVEARE_DATA_DIR; nodes on PostgreSQL: set ALVEARE_DATABASE_URL and ALVEARE_REDIS_URL as they have them";

/** Only making the first account starts a database: any other command there could only list nothing or find no id. */
type CreatesDatabase = "creates-database";

interface Session {
  config: ServerConfig;
  stores: Stores;
  accounts: AccountService;
  /** People with the same broadcast as `accounts`: removing a member revokes their keys on every node. */
  people: People;
  json: boolean;
}

/** Options every account command takes: where the database is, and --json. */
function storeCommand(parent: Command, name: string, description: string): Command {
  return parent
    .command(name)
    .description(description)
    .option("--json", "print one JSON document instead of a table or sentence")
    .option("--data-dir <dir>", "the server's data directory (default ./data, or ALVEARE_DATA_DIR)")
    .option("--config <file>", "the server's config file, for its plans (or ALVEARE_CONFIG)");
}

/** Opens the server's database for one command and says which file it is (stderr, table mode only). */
async function withStore(options: StoreOptions, run: (session: Session) => Promise<void>, creates?: CreatesDatabase): Promise<void> {
  const config = loadCliConfig({ dataDir: options.dataDir, config: options.config });
  const where = storeLocation(config);
  const isNew = config.databaseUrl === undefined && !existsSync(where);
  // Run from the wrong directory, a list would make ./data and an empty database there, and say nothing is in it.
  if (isNew && creates === undefined) {
    throw new RuntimeError(`no database at ${where}: ${OTHER_DATA_DIR_HINT} (alveare accounts create starts a new one)`);
  }
  const json = options.json === true;
  if (!json) note(`using ${where}${isNew ? " (new, empty database)" : ""}`);
  const dirExisted = existsSync(dirname(where));
  const stores = await createStore(config);
  const configFile = options.config ?? process.env.ALVEARE_CONFIG;
  if (stores.recordedPlans !== undefined) {
    const recorded = await stores.recordedPlans().catch(() => undefined);
    if (!configFile) {
      // Without the servers' config file, a CLI on the shared database takes the plans the nodes recorded there.
      if (recorded !== undefined) config.plans = recorded.plans;
      if (!json)
        note(
          recorded !== undefined
            ? "plans: as the serving nodes recorded them"
            : "plans: the defaults (no plan table recorded; pass --config for yours)",
        );
    } else if (recorded?.serving === true && canonicalJson(recorded.plans) !== canonicalJson(config.plans)) {
      // Another table would put accounts on plans the running nodes do not serve (their requests then fail), or count keys by
      // other limits. With no node running, the file is the next table: the first node started with it records it.
      await stores.close();
      throw new UsageError(
        `the plans in ${configFile} differ from the plan table the running nodes recorded in PostgreSQL (${planTableDifferences(config.plans, recorded.plans)}); ` +
          "give the CLI the nodes' config file, or no config file (it then uses the recorded plans)",
      );
    }
  }
  const broadcast = config.redisUrl === undefined ? undefined : nodeBroadcast(config.redisUrl, config.redisPrefix ?? DEFAULT_REDIS_PREFIX);
  let done = false;
  try {
    await run({
      config,
      stores,
      accounts: new AccountService(stores, config.plans, broadcast?.changed, broadcast?.ready),
      people: new People(stores, undefined, { keyRevocations: { ready: broadcast?.ready, changed: broadcast?.changed } }),
      json,
    });
    done = true;
  } catch (error) {
    const sqlite = config.databaseUrl === undefined;
    throw withoutConfigFile(notFoundWhere(error, where, sqlite), sqlite && configFile === undefined);
  } finally {
    broadcast?.close();
    await stores.close();
    if (isNew && !done) forgetNewDatabase(where, dirExisted);
  }
}

/**
 * A database this command started and then failed in (a mistyped plan, a blank name) holds nothing: left there,
 * the next list would find it and list nothing, as if the directory were the server's.
 */
function forgetNewDatabase(where: string, dirExisted: boolean): void {
  for (const file of [where, `${where}-wal`, `${where}-shm`]) rmSync(file, { force: true });
  if (dirExisted) return;
  try {
    rmdirSync(dirname(where));
  } catch {
    // Not empty after all (something else wrote there): left as it is.
  }
}

/**
 * Without --config the CLI knows the default plans only: a plan the server's config file adds
 * is "no plan" here, and the fix is to give the CLI that file, not to pick another plan.
 */
function withoutConfigFile(error: unknown, noConfigFile: boolean): unknown {
  if (!noConfigFile || !(error instanceof ApiError) || error.param !== "plan" || error.code !== "invalid_parameter") return error;
  return new UsageError(`${error.message} A plan the server's config file defines needs that file here too: --config FILE (or ALVEARE_CONFIG).`);
}

/**
 * "No such account" names the database it looked in: commands run from another directory open
 * another ./data (with --json nothing else on stderr says which), and the id is then simply not there.
 */
function notFoundWhere(error: unknown, where: string, sqlite: boolean): unknown {
  const notFound = (error instanceof ApiError && error.status === 404) || error instanceof NotFoundError;
  if (!notFound) return error;
  const hint = sqlite ? `: ${OTHER_DATA_DIR_HINT}` : "";
  return new RuntimeError(`${(error as Error).message} (database ${where}${hint})`);
}

const oneOf =
  (...allowed: string[]) =>
  (value: string): string => {
    if (!allowed.includes(value)) throw new InvalidArgumentError(`It must be ${allowed.slice(0, -1).join(", ")} or ${allowed.at(-1)!}.`);
    return value;
  };

const modeOption = (): Option => new Option("--mode <mode>", "live or test (sandbox)").argParser(oneOf(...KEY_MODES)).default("live");

async function findKey(session: Session, keyId: string): Promise<ApiKeyRecord | undefined> {
  for (const account of await session.accounts.listAccounts()) {
    const key = (await session.accounts.listKeys(account.id)).find((k) => k.id === keyId);
    if (key !== undefined) return key;
  }
  return undefined;
}

export function registerAccountCommands(program: Command): void {
  const accounts = program
    .command("accounts")
    .description("create, list and change customer accounts")
    .addHelpText(
      "after",
      '\nExamples:\n  $ alveare accounts create --name "Acme" --plan starter\n  $ alveare accounts list\n  $ alveare accounts update acct_7Hq2mXv9LpR4sTn1 --plan scale',
    );
  storeCommand(accounts, "create", "create an account on a plan")
    .requiredOption("--name <name>", "the account's display name")
    .requiredOption("--plan <plan>", "its plan: solo, starter, professional, scale, or one from the config file")
    .addHelpText("after", '\nExample:\n  $ alveare accounts create --name "Acme" --plan starter')
    .action((o: StoreOptions & { name: string; plan: string }) =>
      withStore(
        o,
        async ({ accounts: service, json }) => {
          const account = await service.createAccount(CLI_CONTEXT, o.name, o.plan);
          if (json) printJson(accountJson(account));
          else print(`created account ${account.id} (${visible(account.name)}, plan ${account.plan})`);
        },
        "creates-database",
      ),
    );
  storeCommand(accounts, "list", "list all accounts")
    .addHelpText("after", "\nExample:\n  $ alveare accounts list --json")
    .action((o: StoreOptions) =>
      withStore(o, async ({ accounts: service, json }) => {
        const list = await service.listAccounts();
        if (json) {
          printJson(list.map(accountJson));
          return;
        }
        print(
          table(
            ["id", "name", "plan", "status", "created"],
            list.map((a) => [a.id, a.name, a.plan, a.status, shortTime(a.createdAt)]),
            "no accounts yet; create one with: alveare accounts create --name NAME --plan PLAN",
          ),
        );
      }),
    );
  storeCommand(accounts, "update", "change an account's plan or status")
    .argument("<account-id>", "the account, as printed by accounts list")
    .option("--plan <plan>", "move it to this plan")
    .option("--status <status>", "active or suspended (a suspended account's keys are refused)", oneOf("active", "suspended"))
    .addHelpText(
      "after",
      "\nExamples:\n  $ alveare accounts update acct_7Hq2mXv9LpR4sTn1 --plan scale\n  $ alveare accounts update acct_7Hq2mXv9LpR4sTn1 --status suspended",
    )
    .action((id: string, o: StoreOptions & { plan?: string; status?: "active" | "suspended" }, command: Command) => {
      if (o.plan === undefined && o.status === undefined) command.error("error: give --plan, --status or both", { exitCode: 2 });
      return withStore(o, async ({ accounts: service, json }) => {
        let account = o.plan === undefined ? await service.getAccount(id) : await service.changePlan(CLI_CONTEXT, id, o.plan);
        if (o.status !== undefined) account = await service.setStatus(CLI_CONTEXT, id, o.status);
        if (json) printJson(accountJson(account));
        else print(`updated account ${visible(account.id)}: plan ${visible(account.plan)}, ${account.status}`);
      });
    });

  const members = program
    .command("members")
    .description("invite, list and remove the people of an account's dashboard")
    .addHelpText(
      "after",
      "\nExamples:\n  $ alveare members invite --account acct_7Hq2mXv9LpR4sTn1 --email dev@example.com\n  $ alveare members list --account acct_7Hq2mXv9LpR4sTn1\n  $ alveare members remove --account acct_7Hq2mXv9LpR4sTn1 --email dev@example.com",
    );
  storeCommand(members, "invite", "invite a person by e-mail; prints the one-time invitation link")
    .requiredOption("--account <id>", "the account they join")
    .requiredOption("--email <email>", "their e-mail address (their sign-in name)")
    .addHelpText(
      "after",
      "\nThe link starts with ALVEARE_PUBLIC_URL (default http://ALVEARE_HOST:ALVEARE_PORT).\n\nExample:\n  $ alveare members invite --account acct_7Hq2mXv9LpR4sTn1 --email dev@example.com",
    )
    .action((o: StoreOptions & { account: string; email: string }) =>
      withStore(o, async ({ stores, config, json }) => {
        const invitation = invitationJson(await new People(stores, undefined).invite(CLI_CONTEXT, o.account, o.email));
        const url = `${config.publicUrl}${invitation.invite_path}`;
        // The CLI cannot know where the server listens: say which address the link was built from when none was given.
        // Not with --json: its stderr stays empty (the url field shows the address).
        if (!json && (process.env.ALVEARE_PUBLIC_URL === undefined || process.env.ALVEARE_PUBLIC_URL === "")) {
          note(
            `the link starts with ${config.publicUrl} (built from the host and port settings, as the server would listen); set ALVEARE_PUBLIC_URL to the address members open`,
          );
        }
        if (json) printJson({ ...invitation, url });
        else
          print(
            `invited ${visible(invitation.email)} to account ${visible(o.account)}; send them this link (single use, valid until ${invitation.expires_at}):\n${url}`,
          );
      }),
    );

  storeCommand(members, "list", "list an account's members and whether each has accepted the invitation")
    .requiredOption("--account <id>", "the account")
    .addHelpText("after", "\nExample:\n  $ alveare members list --account acct_7Hq2mXv9LpR4sTn1")
    .action((o: StoreOptions & { account: string }) =>
      withStore(o, async ({ stores, accounts: service, json }) => {
        const list = (await stores.people.listMembers((await service.getAccount(o.account)).id)).map(memberJson);
        if (json) {
          printJson(list);
          return;
        }
        print(
          table(
            ["id", "email", "status", "created"],
            list.map((m) => [m.id, m.email, m.status, shortTime(m.created_at)]),
            `account ${visible(o.account)} has no members; invite one with: alveare members invite --account ${visible(o.account)} --email EMAIL`,
          ),
        );
      }),
    );
  storeCommand(
    members,
    "remove",
    "remove a member: their sessions end, their password and invitations stop working, and the API keys they created are revoked, at once",
  )
    .requiredOption("--account <id>", "the account they belong to")
    .option("--member <id>", "the member's id, as printed by members list")
    .option("--email <email>", "or their e-mail address")
    .option("--keep-keys", "keep the API keys they created working, as the account's own keys")
    .addHelpText(
      "after",
      "\nThe e-mail can be invited again afterwards.\n\nExamples:\n  $ alveare members remove --account acct_7Hq2mXv9LpR4sTn1 --member mem_4Kd9sLq2WxZ7pNc1\n  $ alveare members remove --account acct_7Hq2mXv9LpR4sTn1 --email dev@example.com --keep-keys",
    )
    .action((o: StoreOptions & { account: string; member?: string; email?: string; keepKeys?: boolean }, command: Command) => {
      if ((o.member === undefined) === (o.email === undefined)) command.error("error: give --member or --email (one of them)", { exitCode: 2 });
      return withStore(o, async ({ stores, people, accounts: service, json }) => {
        // "no account" for a mistyped account, as every command says, before any member is looked for.
        const accountId = (await service.getAccount(o.account)).id;
        const byEmail = o.email === undefined ? undefined : await stores.people.findMemberByEmail(o.email.trim().toLowerCase());
        // An e-mail is looked up across accounts: one of another account's is no member of this one, named as typed.
        const memberId = o.member ?? (byEmail?.accountId === accountId ? byEmail.id : undefined);
        if (memberId === undefined) throw new NotFoundError(`no member '${visible(o.email ?? "")}' in account '${visible(o.account)}'`);
        const keepKeys = o.keepKeys === true;
        const { member, revokedKeys } = await people.removeMember(CLI_CONTEXT, o.account, memberId, keepKeys);
        const revoked = revokedKeys.map((k) => k.id);
        if (json) printJson({ ...memberJson(member), removed: true, revoked_keys: revoked });
        else
          print(
            `removed member ${member.id} (${visible(member.email)}) from account ${visible(o.account)}; their sessions have ended` +
              (keepKeys
                ? "; the keys they created keep working as the account's own"
                : revoked.length === 0
                  ? "; they had created no unrevoked key"
                  : `; revoked the ${revoked.length === 1 ? "key" : `${revoked.length} keys`} they created: ${revoked.join(", ")}`),
          );
      });
    });

  const keys = program
    .command("keys")
    .description("create, list and revoke API keys")
    .addHelpText(
      "after",
      "\nExamples:\n  $ alveare keys create --account acct_7Hq2mXv9LpR4sTn1 --name laptop\n  $ alveare keys list --account acct_7Hq2mXv9LpR4sTn1\n  $ alveare keys revoke key_3Fw8kZp2QaN6yDc0",
    );
  storeCommand(keys, "create", "create an API key (shown once)")
    .requiredOption("--account <id>", "the account the key belongs to")
    .addOption(modeOption())
    .option("--name <name>", "a label to recognise the key by")
    .addHelpText("after", "\nExample:\n  $ alveare keys create --account acct_7Hq2mXv9LpR4sTn1 --name laptop")
    .action((o: StoreOptions & { account: string; mode: Mode; name?: string }) =>
      withStore(o, async ({ accounts: service, json }) => {
        const created = await service.createKey(CLI_CONTEXT, o.account, o.mode, o.name);
        if (json) printJson(createdKeyJson(created));
        else print(`created ${created.record.mode} key ${created.record.id}\n${created.key}\nThis is the only time the key is shown: store it now.`);
      }),
    );
  storeCommand(keys, "list", "list an account's keys (never the keys themselves)")
    .requiredOption("--account <id>", "the account")
    .addHelpText("after", "\nExample:\n  $ alveare keys list --account acct_7Hq2mXv9LpR4sTn1")
    .action((o: StoreOptions & { account: string }) =>
      withStore(o, async ({ accounts: service, json }) => {
        const list = await service.listKeys(o.account);
        if (json) {
          printJson(list.map(keyJson));
          return;
        }
        print(
          table(
            // CREATED BY: the member whose removal revokes the key ("account": the account's own, made by the operator, as the dashboard says).
            ["id", "name", "mode", "prefix", "created", "created by", "last used", "status"],
            list.map((k) => [
              k.id,
              k.name ?? "-",
              k.mode,
              k.prefix,
              shortTime(k.createdAt),
              k.createdBy ?? "account",
              shortTime(k.lastUsedAt),
              k.revokedAt ? `revoked ${shortTime(k.revokedAt)}` : "active",
            ]),
            `account ${o.account} has no keys; create one with: alveare keys create --account ${o.account}`,
          ),
        );
      }),
    );
  storeCommand(keys, "revoke", "revoke a key for good (revoking it again changes nothing)")
    .argument("<key-id>", "the key's id, as printed by keys list")
    .addHelpText("after", "\nExample:\n  $ alveare keys revoke key_3Fw8kZp2QaN6yDc0")
    .action((keyId: string, o: StoreOptions) =>
      withStore(o, async (session) => {
        const before = await findKey(session, keyId);
        if (before === undefined) throw new NotFoundError(`no key '${keyId}'`);
        await session.accounts.revokeKey(CLI_CONTEXT, keyId);
        if (session.json) printJson({ id: keyId, revoked: true });
        else if (before.revokedAt) print(`key ${keyId} was already revoked (since ${shortTime(before.revokedAt)}); nothing changed`);
        else print(`revoked key ${keyId}; requests with it are refused from now on`);
      }),
    );

  storeCommand(program, "usage", "show an account's usage this month")
    .requiredOption("--account <id>", "the account")
    .addOption(modeOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ alveare usage --account acct_7Hq2mXv9LpR4sTn1\n  $ alveare usage --account acct_7Hq2mXv9LpR4sTn1 --mode test --json",
    )
    .action((o: StoreOptions & { account: string; mode: Mode }) =>
      withStore(o, async ({ stores, config, json }) => {
        const account = await stores.accounts.getAccount(o.account);
        if (account === undefined) throw new NotFoundError(`no account '${o.account}'`);
        // A plan this config lacks: its usage still shows (the limit as 0, as a server with this plan table refuses its keys).
        if (findPlan(config.plans, account.plan) === undefined) {
          const given = o.config ?? process.env.ALVEARE_CONFIG;
          note(
            `account ${account.id} is on plan '${account.plan}', which ${given ? `the config ${given}` : "this command's plans (no --config given)"} does not define: ` +
              "its limit shows as 0, and a server with these plans refuses its keys. If the server's config defines it, pass that file with --config; " +
              "otherwise move the account to a served plan (alveare accounts update ID --plan P)",
          );
        }
        const usage = await usageReport(stores.ledger, reportedPlan(config.plans, account), account.id, o.mode);
        if (json) {
          printJson(usage);
          return;
        }
        print(`${o.mode} usage of account ${account.id} (plan ${account.plan}), ${usage.period_start} to ${usage.period_end}`);
        print(
          table(
            ["", "used", "limit"],
            [
              ["requests", String(usage.requests_used), String(usage.requests_limit)],
              ["tokens", String(usage.tokens_used), "-"],
            ],
            "",
          ),
        );
        const bySpecialist = Object.entries(usage.by_specialist);
        print("");
        print(
          table(
            ["specialist", "requests"],
            bySpecialist.map(([id, n]) => [id, String(n)]),
            "no requests this month",
          ),
        );
      }),
    );

  storeCommand(program, "audit", "show the audit log: who changed what, when and from where (newest first)")
    .option("--account <id>", "only this account's records")
    .option("--action <action>", "only this action, e.g. key.revoked or sign_in.failed")
    .option("--actor <actor>", "only this actor: operator, cli, anonymous, member (any member) or member:EMAIL")
    .option("--since <time>", "from this date or time (UTC), e.g. 2026-11-01")
    .option("--until <time>", "before this date or time (UTC)")
    .option("--limit <n>", "at most this many records (1 to 1000)", "100")
    .addHelpText(
      "after",
      "\nExamples:\n  $ alveare audit\n  $ alveare audit --account acct_7Hq2mXv9LpR4sTn1 --json\n  $ alveare audit --action sign_in.failed --since 2026-11-01",
    )
    .action((o: StoreOptions & { account?: string; action?: string; actor?: string; since?: string; until?: string; limit: string }) =>
      withStore(o, async ({ stores, json }) => {
        const page = await stores.audit.query(
          parseAuditQuery({ account: o.account, action: o.action, actor: o.actor, since: o.since, until: o.until, limit: o.limit }),
        );
        if (json) {
          printJson(auditPageJson(page));
          return;
        }
        print(
          table(
            ["time", "actor", "action", "account", "target", "source", "count", "detail"],
            page.records.map((r) => [
              shortTime(r.at),
              r.actor,
              r.action,
              r.accountId ?? "-",
              r.target ?? "-",
              r.source ?? "-",
              String(r.count),
              // The why of a record (a revoked key's reason, a plan change's old and new plan), as --json gives it.
              detailCell(r.detail),
            ]),
            "no audit records match",
          ),
        );
        if (page.nextCursor !== null) note(`more records are older; narrow with --since/--until or raise --limit`);
      }),
    );
}

/** A record's detail as `key=value` pairs, a value quoted where it holds a space, a quote or "=" (a key's name may). */
function detailCell(detail: Readonly<Record<string, string>> | undefined): string {
  const pairs = Object.entries(detail ?? {}).map(([k, v]) => `${k}=${v === "" || /[\s"=]/.test(v) ? JSON.stringify(v) : v}`);
  return pairs.length === 0 ? "-" : pairs.join(" ");
}
