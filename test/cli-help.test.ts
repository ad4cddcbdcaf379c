import assert from "node:assert/strict";
import Database from "better-sqlite3";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { settingSource } from "../src/cli/cli-config.js";
import { VERSION } from "../src/version.js";
import { cliJson, cliKey, tempDir, tinyModel } from "./helpers/fixtures.js";

const CLI = new URL("../src/cli/main.js", import.meta.url).pathname;
const cleanEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, ALVEARE_THREADS: "1", ALVEARE_METRICS_PORT: "0", ...extra };
  for (const name of [
    "ALVEARE_MODEL",
    "ALVEARE_CONFIG",
    "ALVEARE_PUBLIC_URL",
    "ALVEARE_HOST",
    "ALVEARE_PORT",
    "ALVEARE_DATA_DIR",
    "ALVEARE_LOG_FORMAT",
  ]) {
    if (!(name in extra)) delete env[name];
  }
  return env;
};

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function alveare(args: readonly string[], env: NodeJS.ProcessEnv = cleanEnv()): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], { env, encoding: "utf8", timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const lines = (text: string): string[] =>
  text
    .trim()
    .split("\n")
    .filter((l) => l.length > 0);

describe("alveare help and version", () => {
  for (const args of [
    ["--help"],
    ["-h"],
    ["help"],
    ["serve", "--help"],
    ["keys", "--help"],
    ["keys", "list", "--help"],
    ["help", "accounts"],
    ["usage", "-h"],
  ]) {
    it(`'alveare ${args.join(" ")}' prints help with examples and exits 0`, () => {
      const r = alveare(args);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^Usage: alveare/);
      assert.match(r.stdout, /Examples?:\n {2}\$ alveare /);
      assert.equal(r.stderr, "");
    });
  }

  it("'alveare serve --help' says which model it downloads when none is given", () => {
    const help = alveare(["serve", "--help"]).stdout.replace(/\s+/g, " ");
    assert.match(
      help,
      /default hf:Qwen\/Qwen2\.5-0\.5B-Instruct-GGUF\/qwen2\.5-0\.5b-instruct-q4_k_m\.gguf, ~400 MB, downloaded into the data dir on first start/,
    );
  });

  it("'alveare serve --help' names every field of the config file, and where an example of each is", () => {
    const help = alveare(["serve", "--help"]).stdout.replace(/\s+/g, " ");
    const example = JSON.parse(readFileSync(new URL("../../examples/alveare.config.json", import.meta.url), "utf8")) as Record<string, unknown>;
    for (const field of [...Object.keys(example), "database_url", "redis_url"]) assert.match(help, new RegExp(`[:,] ${field}[ ,.]`), field);
    assert.match(help, /engine \(parallel, queue, threads, snapshot_memory_mb\)/);
    assert.match(help, /examples\/alveare\.config\.json shows every field/);
  });

  for (const args of [["--version"], ["-V"], ["serve", "--version"], ["keys", "revoke", "--version"]]) {
    it(`'alveare ${args.join(" ")}' prints the version and exits 0`, () => {
      const r = alveare(args);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, `${VERSION}\n`);
    });
  }

  it("'alveare help keys revoke' shows the subcommand's own help, and the top-level examples use real id shapes", () => {
    const r = alveare(["help", "keys", "revoke"]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^Usage: alveare keys revoke/);
    assert.doesNotMatch(alveare(["--help"]).stdout, /acc_/, "account ids start acct_");
  });

  it("a group without its subcommand shows the group's help on stderr and exits 2", () => {
    const r = alveare(["keys"]);
    assert.equal(r.status, 2);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /Usage: alveare keys/);
    assert.match(r.stderr, /revoke/);
  });

  it("writes every default the same way, unquoted: (default live), as (default 8080, or ALVEARE_PORT)", () => {
    // Before, commander's own format showed `(default: "live")` and `(default: "100")` beside serve's `(default 8080, …)`.
    for (const args of [["keys", "create"], ["usage"], ["audit"], ["serve"]]) {
      const r = alveare([...args, "--help"]);
      assert.equal(r.status, 0);
      assert.ok(!r.stdout.includes("(default:"), r.stdout);
    }
    assert.match(alveare(["keys", "create", "--help"]).stdout, /--mode <mode> +live or test \(sandbox\) \(default live\)/);
    assert.match(alveare(["audit", "--help"]).stdout, /\(1 to 1000\) \(default 100\)/);
  });

  it("marks the options a command cannot run without as (required), before anyone runs it without them", () => {
    assert.match(alveare(["keys", "create", "--help"]).stdout, /--account <id> +the account the key belongs to \(required\)/);
    const create = alveare(["accounts", "create", "--help"]).stdout;
    assert.match(create, /--name <name> +the account's display name \(required\)/);
    assert.match(create, /--plan <plan> +its plan: .*\(required\)/s);
    // Optional ones are not marked.
    assert.doesNotMatch(alveare(["keys", "create", "--help"]).stdout, /--name <name>[^\n]*required/);
  });

  it("suggests the command or option meant by a typo, and exits 2", () => {
    // One line each, as every error: the suggestion on the same line.
    const command = alveare(["serv"]);
    assert.equal(command.status, 2);
    assert.equal(command.stderr, "alveare: unknown command 'serv' (Did you mean serve?)\n");
    const option = alveare(["accounts", "list", "--jsn"]);
    assert.equal(option.status, 2);
    assert.equal(option.stderr, "alveare: unknown option '--jsn' (Did you mean --json?)\n");
    const help = alveare(["help", "nope"]);
    assert.equal(help.status, 2);
    assert.equal(help.stderr, "alveare: unknown command 'nope'; see alveare --help\n");
  });

  it("'alveare serve model.gguf' says the model is given with --model, before anything loads", () => {
    const model = alveare(["serve", "./models/qwen.gguf", "--data-dir", tempDir()]);
    assert.equal(model.status, 2);
    assert.equal(model.stderr, "alveare: serve takes the model as an option: alveare serve --model ./models/qwen.gguf\n");
    const uri = alveare(["serve", "hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf", "--data-dir", tempDir()]);
    assert.match(uri.stderr, /--model hf:Qwen\//);
    const other = alveare(["serve", "now", "--data-dir", tempDir()]);
    assert.equal(other.status, 2);
    assert.equal(other.stderr, "alveare: serve takes no arguments, got 'now'; see alveare serve --help\n");
  });

  it("names a mistyped option before the required option it seems to leave out", () => {
    // `--acount` is the mistake; "required option '--account <id>' not specified" would hide it.
    const typo = alveare(["keys", "create", "--acount", "acct_x", "--data-dir", tempDir()]);
    assert.equal(typo.status, 2);
    assert.equal(typo.stderr, "alveare: unknown option '--acount' (Did you mean --account?)\n");
    const second = alveare(["accounts", "create", "--name", "x", "--pln", "starter", "--data-dir", tempDir()]);
    assert.equal(second.stderr, "alveare: unknown option '--pln' (Did you mean --plan?)\n");
    // A value that looks like an option is still a value: the missing --plan is what is wrong.
    const value = alveare(["accounts", "create", "--name", "--odd", "--data-dir", tempDir()]);
    assert.equal(value.status, 2);
    assert.equal(value.stderr, "alveare: required option '--plan <plan>' not specified; see alveare accounts create --help\n");
    const missing = alveare(["keys", "create", "--data-dir", tempDir()]);
    assert.equal(missing.stderr, "alveare: required option '--account <id>' not specified; see alveare keys create --help\n");
  });

  it("names a stray argument, such as the second word of an unquoted name, and points at the command's help", () => {
    // Before: "too many arguments for 'create'. Expected 0 arguments but got 1.", naming neither the word nor the help.
    const dataDir = tempDir();
    const name = alveare(["accounts", "create", "--name", "Acme", "Corp", "--plan", "starter", "--data-dir", dataDir]);
    assert.equal(name.status, 2);
    assert.equal(name.stderr, "alveare: accounts create takes no arguments, got 'Corp'; see alveare accounts create --help\n");
    assert.equal(existsSync(join(dataDir, "alveare.db")), false, "nothing was created");
    const revoke = alveare(["keys", "revoke", "key_a", "key_b"]);
    assert.equal(revoke.status, 2);
    assert.equal(revoke.stderr, "alveare: keys revoke takes <key-id> only, got 'key_b' too; see alveare keys revoke --help\n");
    // The word is echoed with its control characters escaped, as every error line does.
    const escaped = alveare(["accounts", "list", "\u001b[2J"]);
    assert.equal(escaped.stderr, "alveare: accounts list takes no arguments, got '\\u001b[2J'; see alveare accounts list --help\n");
  });

  it("names an option left without its value when the next word is another option, not the word after that", () => {
    // Before: commander took `--host` for the port, then said "serve takes no arguments, got '0.0.0.0'"
    // (and for `--port --model m.gguf`, asked for the model as an option).
    const dataDir = tempDir();
    for (const [args, line] of [
      [["serve", "--port", "--host", "0.0.0.0"], "alveare: --port needs a value, but is followed by the option --host; see alveare serve --help"],
      [["serve", "--port", "--model", "m.gguf"], "alveare: --port needs a value, but is followed by the option --model; see alveare serve --help"],
      [
        ["keys", "create", "--account", "--json", "--data-dir", dataDir],
        "alveare: --account needs a value, but is followed by the option --json; see alveare keys create --help",
      ],
    ] as const) {
      const result = alveare([...args]);
      assert.equal(result.status, 2, args.join(" "));
      assert.equal(result.stderr, `${line}\n`);
    }
    assert.equal(existsSync(join(dataDir, "alveare.db")), false, "nothing was created");
  });

  it("points a missing option, argument or value at the command's own help", () => {
    // Before, these lines said what was missing but not where the command's options are listed.
    for (const [args, line] of [
      [["keys", "revoke"], "alveare: missing required argument 'key-id'; see alveare keys revoke --help"],
      [["serve", "--port"], "alveare: option '--port <n>' argument missing; see alveare serve --help"],
      [["keys", "nope"], "alveare: unknown command 'nope'; see alveare keys --help"],
      [["keys", "create", "--account"], "alveare: option '--account <id>' argument missing; see alveare keys create --help"],
      // A sentence that lists the allowed values already says what to type.
      [
        ["keys", "create", "--account", "a", "--mode", "prod"],
        "alveare: option '--mode <mode>' argument 'prod' is invalid. It must be live or test.",
      ],
    ] as const) {
      const r = alveare(args);
      assert.equal(r.status, 2);
      assert.equal(r.stderr, `${line}\n`);
    }
  });
});

describe("alveare exit codes and output", () => {
  it("exits 2 for usage errors (a bad e-mail included) and 1 when a well-formed command cannot be done", () => {
    const dataDir = tempDir();
    const { accountId } = cliKey(dataDir, "solo", cleanEnv());
    const usage: Array<[string[], RegExp]> = [
      [["accounts", "create", "--plan", "solo"], /--name/],
      [["accounts", "create", "--name", "x", "--plan", "gold"], /no plan 'gold'/],
      [["members", "invite", "--account", accountId, "--email", "not-an-email"], /email/],
      [["keys", "create", "--account", accountId, "--mode", "prod"], /live or test/],
      [["accounts", "update", accountId], /--plan, --status/],
    ];
    for (const [args, message] of usage) {
      const r = alveare([...args, "--data-dir", dataDir]);
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    for (const args of [
      ["keys", "revoke", "key_nope"],
      ["usage", "--account", "acct_nope"],
      ["keys", "list", "--account", "acct_nope"],
    ]) {
      const r = alveare([...args, "--data-dir", dataDir]);
      assert.equal(r.status, 1, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /^alveare: no (key|account) '\w+' \(database /m);
      assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
    }
  });

  it("prints tables with headers, names the database on stderr, and keeps --json to one document", () => {
    const dataDir = tempDir();
    const env = cleanEnv();
    const { accountId } = cliKey(dataDir, "starter", env);
    const database = join(dataDir, "alveare.db");

    const accounts = alveare(["accounts", "list", "--data-dir", dataDir], env);
    assert.equal(accounts.status, 0, accounts.stderr);
    assert.match(lines(accounts.stdout)[0]!, /^ID\s+NAME\s+PLAN\s+STATUS\s+CREATED$/);
    assert.match(lines(accounts.stdout)[1]!, new RegExp(`^${accountId}\\s+test\\s+starter\\s+active\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\dZ$`));
    assert.equal(accounts.stderr, `using ${database}\n`);

    const keys = alveare(["keys", "list", "--account", accountId, "--data-dir", dataDir], env);
    // A key the operator made is the account's own: "account", as the dashboard says.
    assert.match(lines(keys.stdout)[0]!, /^ID\s+NAME\s+MODE\s+PREFIX\s+CREATED\s+CREATED BY\s+LAST USED\s+STATUS$/);
    assert.match(lines(keys.stdout)[1]!, /^key_\w+\s+-\s+live\s+alv_live_\S+\s+\d{4}-\d\d-\d\d \d\d:\d\dZ\s+account\s+-\s+active$/);

    const usage = alveare(["usage", "--account", accountId, "--data-dir", dataDir], env);
    assert.equal(usage.status, 0, usage.stderr);
    assert.throws(() => JSON.parse(usage.stdout) as unknown, "without --json, usage is a table, not JSON");
    assert.match(usage.stdout, /^\s+USED\s+LIMIT$/m);
    assert.match(usage.stdout, /^requests\s+0\s+\d+$/m);
    assert.match(usage.stdout, /^tokens\s+0\s+-$/m);

    for (const args of [
      ["accounts", "list"],
      ["keys", "list", "--account", accountId],
      ["usage", "--account", accountId],
    ]) {
      const json = alveare([...args, "--json", "--data-dir", dataDir], env);
      assert.equal(json.status, 0, json.stderr);
      assert.equal(lines(json.stdout).length, 1, "one JSON document on one line");
      JSON.parse(json.stdout);
      assert.equal(json.stderr, "", "nothing extra with --json");
    }
  });

  it("shows the usage of an account on a plan its config does not define, with a limit of 0 and what to do", () => {
    const dataDir = tempDir();
    const env = cleanEnv();
    const { accountId } = cliKey(dataDir, "starter", env);
    const db = new Database(join(dataDir, "alveare.db"));
    db.prepare("UPDATE accounts SET plan = 'tiny' WHERE id = ?").run(accountId);
    db.close();
    // It was exit 1 with "which the config does not define", though no config was given.
    const usage = alveare(["usage", "--account", accountId, "--data-dir", dataDir], env);
    assert.equal(usage.status, 0, usage.stderr);
    assert.match(usage.stdout, /^requests\s+0\s+0$/m);
    assert.match(
      usage.stderr,
      /is on plan 'tiny', which this command's plans \(no --config given\) does not define: .*pass that file with --config.*alveare accounts update ID --plan P/,
    );
    const json = alveare(["usage", "--account", accountId, "--json", "--data-dir", dataDir], env);
    assert.equal(json.status, 0, json.stderr);
    assert.equal((JSON.parse(json.stdout) as { requests_limit: number }).requests_limit, 0);
  });

  it("says a key was already revoked instead of revoking it again", () => {
    const dataDir = tempDir();
    const env = cleanEnv();
    const { accountId } = cliKey(dataDir, "solo", env);
    const keyId = String((cliJson(["keys", "list", "--account", accountId, "--data-dir", dataDir], env) as unknown as Array<{ id: string }>)[0]!.id);
    const first = alveare(["keys", "revoke", keyId, "--data-dir", dataDir], env);
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stdout, new RegExp(`^revoked key ${keyId}`));
    const second = alveare(["keys", "revoke", keyId, "--data-dir", dataDir], env);
    assert.equal(second.status, 0, second.stderr);
    assert.match(second.stdout, new RegExp(`^key ${keyId} was already revoked`));
    // --json keeps its shape whichever way it went.
    assert.deepEqual(cliJson(["keys", "revoke", keyId, "--data-dir", dataDir], env), { id: keyId, revoked: true });
  });

  it("prints a complete invitation URL: ALVEARE_PUBLIC_URL, or the host and port", () => {
    const dataDir = tempDir();
    const { accountId } = cliKey(dataDir, "solo", cleanEnv());
    const invite = (env: Record<string, string>, email: string): string => {
      const r = alveare(["members", "invite", "--account", accountId, "--email", email, "--data-dir", dataDir], cleanEnv(env));
      assert.equal(r.status, 0, r.stderr);
      return r.stdout;
    };
    assert.match(invite({}, "a@example.com"), /^http:\/\/127\.0\.0\.1:8080\/dashboard\/#invite=\w{40}$/m);
    assert.match(
      invite({ ALVEARE_HOST: "10.0.0.5", ALVEARE_PORT: "9000" }, "b@example.com"),
      /^http:\/\/10\.0\.0\.5:9000\/dashboard\/#invite=\w{40}$/m,
    );
    assert.match(
      invite({ ALVEARE_PUBLIC_URL: "https://ai.example.com/" }, "c@example.com"),
      /^https:\/\/ai\.example\.com\/dashboard\/#invite=\w{40}$/m,
    );
    const bad = alveare(
      ["members", "invite", "--account", accountId, "--email", "d@example.com", "--data-dir", dataDir],
      cleanEnv({ ALVEARE_PUBLIC_URL: "ai.example.com" }),
    );
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /ALVEARE_PUBLIC_URL/);
  });
});

describe("alveare account commands on another database", () => {
  it("an account, key or member that is not there names the database looked in, under --json too", () => {
    // Run from another directory, the commands open another ./data: the id is simply not in it.
    const dataDir = tempDir();
    const database = join(dataDir, "alveare.db");
    assert.equal(alveare(["accounts", "create", "--name", "other", "--plan", "solo", "--data-dir", dataDir]).status, 0);
    const hint = `(database ${database}: if the server uses another, pass its data directory with --data-dir or ALVEARE_DATA_DIR; nodes on PostgreSQL: set ALVEARE_DATABASE_URL and ALVEARE_REDIS_URL as they have them)`;
    for (const [args, what] of [
      [["keys", "create", "--account", "acct_elsewhere", "--json"], "no account 'acct_elsewhere'"],
      [["usage", "--account", "acct_elsewhere", "--json"], "no account 'acct_elsewhere'"],
      [["keys", "revoke", "key_elsewhere", "--json"], "no key 'key_elsewhere'"],
    ] as const) {
      const r = alveare([...args, "--data-dir", dataDir]);
      assert.equal(r.status, 1, r.stderr);
      assert.equal(r.stdout, "");
      assert.deepEqual(lines(r.stderr), [`alveare: ${what} ${hint}`]);
    }
  });

  it("a command other than accounts create where there is no database says so, and makes none", () => {
    // Before, `accounts list` run from the wrong directory made ./data and an empty database there, and listed nothing.
    const dataDir = join(tempDir(), "data");
    const database = join(dataDir, "alveare.db");
    for (const args of [
      ["accounts", "list"],
      ["accounts", "list", "--json"],
      ["keys", "list", "--account", "acct_x"],
      ["audit", "--json"],
    ]) {
      const r = alveare([...args, "--data-dir", dataDir]);
      assert.equal(r.status, 1, args.join(" "));
      assert.equal(r.stdout, "");
      assert.deepEqual(lines(r.stderr), [
        `alveare: no database at ${database}: if the server uses another, pass its data directory with --data-dir or ALVEARE_DATA_DIR; nodes on PostgreSQL: set ALVEARE_DATABASE_URL and ALVEARE_REDIS_URL as they have them (alveare accounts create starts a new one)`,
      ]);
      assert.equal(existsSync(dataDir), false, "nothing was made");
    }
    // A create that fails there (a mistyped plan, a blank name) leaves nothing behind for the next list to find.
    for (const args of [
      ["--name", "x", "--plan", "tiny"],
      ["--name", "  ", "--plan", "solo"],
    ]) {
      assert.equal(alveare(["accounts", "create", ...args, "--data-dir", dataDir]).status, 2, args.join(" "));
      assert.equal(existsSync(dataDir), false, `nothing left after ${args.join(" ")}`);
    }
    assert.equal(alveare(["accounts", "list", "--data-dir", dataDir]).status, 1);
    assert.equal(alveare(["accounts", "create", "--name", "first", "--plan", "solo", "--data-dir", dataDir]).status, 0);
    assert.equal(alveare(["accounts", "list", "--json", "--data-dir", dataDir]).status, 0);
  });
});

describe("alveare account commands and the config file's plans", () => {
  it("an unknown plan without --config says that the server's own plans need its config file", () => {
    const dataDir = tempDir();
    const config = join(tempDir(), "alveare.json");
    writeFileSync(config, JSON.stringify({ plans: { tiny: { requests_per_minute: 5, requests_per_month: 100, specialists: "*" } } }));
    // Before, the line listed the default plans only, as if 'tiny' were a typo.
    const bare = alveare(["accounts", "create", "--name", "x", "--plan", "tiny", "--json", "--data-dir", dataDir]);
    assert.equal(bare.status, 2);
    assert.deepEqual(lines(bare.stderr), [
      "alveare: Invalid 'plan': there is no plan 'tiny'. Plans: solo, starter, professional, scale. A plan the server's config file defines needs that file here too: --config FILE (or ALVEARE_CONFIG).",
    ]);
    const withFile = alveare(["accounts", "create", "--name", "x", "--plan", "tiny", "--json", "--config", config, "--data-dir", dataDir]);
    assert.equal(withFile.status, 0, withFile.stderr);
    // With the file given, a plan it lacks is just unknown.
    const wrong = alveare(["accounts", "create", "--name", "x", "--plan", "tinny", "--config", config, "--data-dir", dataDir]);
    assert.equal(wrong.status, 2);
    assert.equal(
      lines(wrong.stderr).at(-1),
      "alveare: Invalid 'plan': there is no plan 'tinny'. Did you mean 'tiny'? Plans: solo, starter, professional, scale, tiny.",
    );
    // Case is a slip too; a name far from every plan gets no guess.
    const capital = alveare(["accounts", "create", "--name", "x", "--plan", "Starter", "--data-dir", dataDir]);
    assert.match(lines(capital.stderr).at(-1)!, /^alveare: Invalid 'plan': there is no plan 'Starter'\. Did you mean 'starter'\? Plans: /);
    const far = alveare(["accounts", "create", "--name", "x", "--plan", "enterprise", "--data-dir", dataDir]);
    assert.doesNotMatch(far.stderr, /Did you mean/);
    // Two edits in four letters is another word: "gold" used to be answered "Did you mean 'solo'?".
    const gold = alveare(["accounts", "create", "--name", "x", "--plan", "gold", "--data-dir", dataDir]);
    assert.equal(gold.status, 2);
    assert.doesNotMatch(gold.stderr, /Did you mean/);
    const typo = alveare(["accounts", "create", "--name", "x", "--plan", "profesional", "--data-dir", dataDir]);
    assert.match(lines(typo.stderr).at(-1)!, /Did you mean 'professional'\?/);
    // A shortening names the one plan it begins; one that begins several names none.
    const short = alveare(["accounts", "update", "acct_x", "--plan", "pro", "--data-dir", dataDir]);
    assert.equal(short.status, 2);
    assert.match(lines(short.stderr).at(-1)!, /there is no plan 'pro'\. Did you mean 'professional'\?/);
    const several = alveare(["accounts", "create", "--name", "x", "--plan", "s", "--data-dir", dataDir]);
    assert.equal(several.status, 2);
    assert.doesNotMatch(several.stderr, /Did you mean/);
  });
});

describe("alveare serve start-up failures", () => {
  it("a port in use is one line naming the flag, before any model is loaded", async () => {
    const model = await tinyModel();
    const taken: Server = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = String((taken.address() as AddressInfo).port);
    try {
      const r = spawnSync(process.execPath, [CLI, "serve", "--model", model, "--port", port, "--data-dir", tempDir()], {
        env: cleanEnv(),
        encoding: "utf8",
        timeout: 120_000,
      });
      assert.equal(r.status, 1);
      assert.equal(lines(r.stderr).length, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use \\(port from --port\\)`));
      assert.equal(r.stdout, "", "nothing was logged: no model was loaded");
      const fromEnv = spawnSync(process.execPath, [CLI, "serve", "--model", model, "--data-dir", tempDir()], {
        env: cleanEnv({ ALVEARE_PORT: port }),
        encoding: "utf8",
        timeout: 120_000,
      });
      assert.equal(fromEnv.status, 1);
      assert.match(fromEnv.stderr, /\(port from ALVEARE_PORT\)/);
      // The default names itself plainly, without a parenthesis inside the parenthesis.
      assert.equal(settingSource({ name: "--port", value: undefined }, "ALVEARE_NOT_SET_ANYWHERE", "port", undefined), "the default");
    } finally {
      taken.close();
    }
  });

  it("a missing model file names --model (or ALVEARE_MODEL, or the config field) that gave it", () => {
    const r = alveare(["serve", "--model", "/nope.gguf", "--port", "0", "--data-dir", tempDir()]);
    assert.equal(r.status, 2);
    assert.deepEqual(lines(r.stderr), ["alveare: model file not found: /nope.gguf (given by --model); pass an existing .gguf file or an hf: URI"]);
    assert.equal(r.stdout, "");
    const fromEnv = alveare(["serve", "--port", "0", "--data-dir", tempDir()], cleanEnv({ ALVEARE_MODEL: "/nope.gguf" }));
    assert.match(fromEnv.stderr, /\(given by ALVEARE_MODEL\)/);
    const config = join(tempDir(), "c.json");
    writeFileSync(config, JSON.stringify({ models: { small: "/nope-small.gguf" }, specialists: { chat: { model: "small" } } }));
    const fromFile = alveare(["serve", "--config", config, "--port", "0", "--model", "/also-nope.gguf", "--data-dir", tempDir()]);
    assert.equal(fromFile.status, 2);
    // The first missing file is reported; classify comes before chat and uses the base model.
    assert.match(fromFile.stderr, /\/also-nope\.gguf \(given by --model\)/);
  });

  it("a missing relative model path names where it was looked for, and where npm start runs when it was typed elsewhere", () => {
    // Before: `cd sdk && npm start -- --model ./my-model.gguf` said only "model file not found: ./my-model.gguf",
    // which is in sdk/, while npm had run the server in the package's directory.
    const runsIn = realpathSync(tempDir());
    const typedIn = tempDir();
    const started = spawnSync(process.execPath, [CLI, "serve", "--model", "./my-model.gguf", "--port", "0", "--data-dir", tempDir()], {
      cwd: runsIn,
      env: cleanEnv({ npm_lifecycle_event: "start", INIT_CWD: typedIn }),
      encoding: "utf8",
    });
    assert.equal(started.status, 2);
    assert.deepEqual(lines(started.stderr), [
      `alveare: model file not found: ${join(runsIn, "my-model.gguf")} (given by --model as ./my-model.gguf; npm start runs in ${runsIn}, not in ${typedIn} where it was typed: give an absolute path); pass an existing .gguf file or an hf: URI`,
    ]);
    // Typed where it runs: the absolute path, without the note.
    const here = spawnSync(process.execPath, [CLI, "serve", "--model", "my-model.gguf", "--port", "0", "--data-dir", tempDir()], {
      cwd: runsIn,
      env: cleanEnv(),
      encoding: "utf8",
    });
    assert.deepEqual(lines(here.stderr), [
      `alveare: model file not found: ${join(runsIn, "my-model.gguf")} (given by --model as my-model.gguf); pass an existing .gguf file or an hf: URI`,
    ]);
  });

  it("a directory given as the model is named as one, with the .gguf file it holds", async () => {
    const model = await tinyModel();
    const holder = tempDir();
    copyFileSync(model, join(holder, "tiny.gguf"));
    // Before, an existing directory was reported as "model file not found".
    const one = alveare(["serve", "--model", holder, "--port", "0", "--data-dir", tempDir()]);
    assert.equal(one.status, 2);
    assert.deepEqual(lines(one.stderr), [
      `alveare: ${holder} is a directory (given by --model); pass the .gguf file in it: ${join(holder, "tiny.gguf")}`,
    ]);
    assert.equal(one.stdout, "");
    const empty = tempDir();
    const none = alveare(["serve", "--port", "0", "--data-dir", tempDir()], cleanEnv({ ALVEARE_MODEL: empty }));
    assert.equal(none.status, 2);
    assert.deepEqual(lines(none.stderr), [
      `alveare: ${empty} is a directory (given by ALVEARE_MODEL); pass the path of a .gguf file, not of its directory`,
    ]);
  });

  it("a file that is not a GGUF model is refused the same way, before anything loads", () => {
    const notModel = join(tempDir(), "notes.gguf");
    writeFileSync(notModel, "not a model at all\n");
    const r = alveare(["serve", "--model", notModel, "--port", "0", "--data-dir", tempDir()]);
    assert.equal(r.status, 2);
    assert.deepEqual(lines(r.stderr), [`alveare: ${notModel} is not a GGUF model file (given by --model); pass a .gguf file or an hf: URI`]);
    assert.equal(r.stdout, "");
    const empty = join(tempDir(), "empty.gguf");
    writeFileSync(empty, "");
    const fromEnv = alveare(["serve", "--port", "0", "--data-dir", tempDir()], cleanEnv({ ALVEARE_MODEL: empty }));
    assert.equal(fromEnv.status, 2);
    assert.match(fromEnv.stderr, /is not a GGUF model file \(given by ALVEARE_MODEL\)/);
  });

  it("a missing or non-GGUF LoRA adapter names its config field, before anything loads", async () => {
    const model = await tinyModel();
    const config = join(tempDir(), "c.json");
    const withAdapter = (path: string): string[] => {
      writeFileSync(config, JSON.stringify({ specialists: { tickets: { description: "t", system_prompt: "Route it.", lora: { path } } } }));
      return ["serve", "--config", config, "--model", model, "--port", "0", "--data-dir", tempDir()];
    };
    // Before, the model loaded and the server died with a bare ENOENT from llama.cpp's loader (exit 1).
    const missing = alveare(withAdapter("./adapters/nope.gguf"));
    assert.equal(missing.status, 2);
    assert.deepEqual(lines(missing.stderr), [
      `alveare: LoRA adapter not found: ${join(process.cwd(), "adapters", "nope.gguf")} (given by 'specialists.tickets.lora.path' in ${config} as ./adapters/nope.gguf); pass an existing .gguf adapter, or remove 'lora'`,
    ]);
    assert.equal(missing.stdout, "", "nothing was logged: no model was loaded");
    const notAdapter = join(tempDir(), "adapter.gguf");
    writeFileSync(notAdapter, "not an adapter\n");
    const wrong = alveare(withAdapter(notAdapter));
    assert.equal(wrong.status, 2);
    assert.match(wrong.stderr, /is not a GGUF adapter file \(given by 'specialists\.tickets\.lora\.path' in /);
  });

  it("a bad config file is one line naming the file and the field", () => {
    const config = join(tempDir(), "alveare.json");
    writeFileSync(config, JSON.stringify({ engine: { parallel: 0 } }));
    const r = alveare(["serve", "--config", config]);
    assert.equal(r.status, 2);
    assert.equal(lines(r.stderr).length, 1, r.stderr);
    assert.match(r.stderr, /engine\.parallel/);
    assert.ok(r.stderr.includes(config), r.stderr);
    const format = alveare(["serve", "--port", "0"], cleanEnv({ ALVEARE_LOG_FORMAT: "xml" }));
    assert.equal(format.status, 2);
    assert.match(format.stderr, /ALVEARE_LOG_FORMAT/);
  });

  it("a config file that cannot be read names the flag or the variable that gave it", () => {
    const missing = join(tempDir(), "nope.json");
    const fromFlag = alveare(["serve", "--config", missing, "--port", "0"]);
    assert.equal(fromFlag.status, 2);
    assert.match(fromFlag.stderr, /^alveare: configuration error at --config: cannot read /);
    // Before, the variable's file was blamed on --config, a flag the user never typed.
    for (const args of [
      ["serve", "--port", "0"],
      ["accounts", "list"],
    ]) {
      const fromEnv = alveare(args, cleanEnv({ ALVEARE_CONFIG: missing, ALVEARE_DATA_DIR: tempDir() }));
      assert.equal(fromEnv.status, 2);
      assert.deepEqual(lines(fromEnv.stderr), [
        `alveare: configuration error at ALVEARE_CONFIG: cannot read ${missing}: ENOENT: no such file or directory, open '${missing}'`,
      ]);
    }
  });
});
