import { parseArgs } from "node:util";
import { loadConfig } from "../config/config.js";
import { AccountService } from "../gate/accounts.js";
import { usageReport } from "../metering/usage-report.js";
import { databasePath } from "../server/server.js";
import { SqliteStore } from "../store/sqlite/sqlite-store.js";
import { People } from "../dashboard/people.js";
import type { Mode } from "../store/store.js";

const OPTIONS = {
  json: { type: "boolean" },
  name: { type: "string" },
  plan: { type: "string" },
  account: { type: "string" },
  mode: { type: "string" },
  status: { type: "string" },
  email: { type: "string" },
  "data-dir": { type: "string" },
  config: { type: "string" },
} as const;

export class CommandError extends Error {}

const print = (text: string): void => {
  process.stdout.write(`${text}\n`);
};

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === "") throw new CommandError(`missing --${flag}`);
  return value;
}

/**
 * `alveare accounts|keys|usage …`: the operator's commands, on the same database
 * file the server uses (the data dir's alveare.db). Returns false for commands
 * that are not theirs.
 */
export async function runAccountsCommand(command: string | undefined, args: string[]): Promise<boolean> {
  if (command !== "accounts" && command !== "keys" && command !== "usage" && command !== "members") return false;
  const { values, positionals } = parseArgs({ args, options: OPTIONS, allowPositionals: true });
  const config = loadConfig({ dataDir: values["data-dir"], config: values.config });
  const store = new SqliteStore(databasePath(config));
  const accounts = new AccountService(store, config.plans);
  try {
    const action = command === "usage" ? "show" : positionals[0];
    switch (`${command} ${action}`) {
      case "accounts create": {
        const account = await accounts.createAccount(required(values.name, "name"), required(values.plan, "plan"));
        print(values.json ? JSON.stringify({ id: account.id, name: account.name, plan: account.plan }) : `created account ${account.id} (${account.name}, plan ${account.plan})`);
        return true;
      }
      case "accounts list": {
        const list = await accounts.listAccounts();
        if (values.json) print(JSON.stringify(list.map((a) => ({ id: a.id, name: a.name, plan: a.plan, status: a.status, created_at: a.createdAt }))));
        else for (const a of list) print(`${a.id}\t${a.name}\t${a.plan}\t${a.status}`);
        return true;
      }
      case "accounts update": {
        const id = positionals[1];
        if (id === undefined || (values.plan === undefined && values.status === undefined)) {
          throw new CommandError("usage: alveare accounts update ACCOUNT_ID [--plan P] [--status active|suspended]");
        }
        let account = values.plan === undefined ? await accounts.getAccount(id) : await accounts.changePlan(id, values.plan);
        if (values.status !== undefined) account = await accounts.setStatus(id, values.status as "active" | "suspended");
        print(values.json ? JSON.stringify({ id: account.id, name: account.name, plan: account.plan, status: account.status }) : `${account.id}: plan ${account.plan}, ${account.status}`);
        return true;
      }
      case "members invite": {
        const { member, token } = await new People(store, undefined).invite(required(values.account, "account"), required(values.email, "email"));
        const path = `/dashboard/#invite=${token}`;
        print(values.json ? JSON.stringify({ member_id: member.id, email: member.email, invite_path: path }) : `invitation for ${member.email} (valid 7 days): <server>${path}`);
        return true;
      }
      case "keys create": {
        const mode = (values.mode ?? "live") as Mode;
        const { record, key } = await accounts.createKey(required(values.account, "account"), mode, values.name);
        print(values.json
          ? JSON.stringify({ id: record.id, key, mode: record.mode, account_id: record.accountId })
          : `created ${record.mode} key ${record.id}\n${key}\nThis is the only time the key is shown: store it now.`);
        return true;
      }
      case "keys list": {
        const keys = await accounts.listKeys(required(values.account, "account"));
        if (values.json) {
          print(JSON.stringify(keys.map((k) => ({
            id: k.id, name: k.name, mode: k.mode, prefix: k.prefix, created_at: k.createdAt, last_used_at: k.lastUsedAt, revoked_at: k.revokedAt,
          }))));
        } else {
          for (const k of keys) print(`${k.id}\t${k.mode}\t${k.prefix}\t${k.name ?? "-"}\tcreated ${k.createdAt}\t${k.revokedAt ? `revoked ${k.revokedAt}` : "active"}`);
        }
        return true;
      }
      case "keys revoke": {
        const keyId = positionals[1];
        if (keyId === undefined) throw new CommandError("usage: alveare keys revoke KEY_ID");
        await accounts.revokeKey(keyId);
        print(values.json ? JSON.stringify({ id: keyId, revoked: true }) : `revoked ${keyId}`);
        return true;
      }
      case "usage show": {
        const account = await store.getAccount(required(values.account, "account"));
        if (account === undefined) throw new CommandError(`no account '${values.account}'`);
        const plan = config.plans[account.plan];
        if (plan === undefined) throw new CommandError(`account ${account.id} is on plan '${account.plan}', which the config does not define`);
        const mode = (values.mode ?? "live") as Mode;
        if (mode !== "live" && mode !== "test") throw new CommandError("--mode must be live or test");
        const usage = await usageReport(store, plan, account.id, mode);
        print(values.json ? JSON.stringify(usage) : JSON.stringify(usage, null, 2));
        return true;
      }
      default:
        throw new CommandError(`unknown command '${command} ${action ?? ""}'; see alveare --help`);
    }
  } finally {
    await store.close();
  }
}
