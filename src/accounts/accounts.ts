import { ApiError, errors, shortened } from "../errors.js";
import { randomBase62 } from "../ids.js";
import type { AuditContext } from "../store/audit-log.js";
import type { Account, ApiKeyRecord, Mode, Stores } from "../store/store.js";
import { generateKey } from "./api-keys.js";
import { isKeyMode } from "../gate/credentials.js";
import { DEFAULT_MAX_KEYS, findPlan, type Plan } from "../gate/plans.js";

import { CONTROL_CHARACTER_PROBLEM, FIELD_LIMITS, hasControlCharacter } from "./bounded-fields.js";

/** A member may create this many times the plan's `max_keys` of a mode in any 24 hours. */
const KEYS_PER_DAY_PER_CAP = 4;

/** A name must show something: whitespace, joiners and other characters that render as nothing alone would read as blank. */
const visible = (name: string): boolean => /[^\s\p{Default_Ignorable_Code_Point}]/u.test(name);

/** The same rules the HTTP schemas hold (length, no control characters), for callers that come another way (the CLI). */
function bounded(param: string, value: string, limit: number): void {
  // Counted in characters (code points), as the schemas' maxLength counts them.
  if (value.length > limit && [...value].length > limit)
    throw new AccountError(errors.invalidParameter(param, `must be at most ${limit} characters long.`));
  if (hasControlCharacter(value)) throw new AccountError(errors.invalidParameter(param, CONTROL_CHARACTER_PROBLEM));
}

/**
 * Account and key operations, shared by the CLI, the admin API and the
 * dashboard, so each rule (plan names, key cap, suspension) is enforced once,
 * and each change is written to the audit log with who made it.
 */
export class AccountService {
  constructor(
    private readonly stores: Pick<Stores, "accounts" | "audit">,
    private readonly plans: Readonly<Record<string, Plan>>,
    /**
     * Called once a revocation, a plan or a status change is committed: with
     * several nodes it tells every node's key cache (the change must hold on
     * their very next request). A single node's store sees its own writes.
     */
    private readonly changed: () => Promise<void> = async () => {},
    /**
     * Called before such a change is written: it fails when the other nodes
     * could not be told (the CLI cannot reach Redis), so nothing is changed.
     */
    private readonly ready: () => Promise<void> = async () => {},
  ) {}

  private plan(name: string): Plan {
    const plan = findPlan(this.plans, name);
    if (plan === undefined) throw new AccountError(errors.unknownPlan(name, Object.keys(this.plans)));
    return plan;
  }

  async createAccount(context: AuditContext, given: string, plan: string): Promise<Account> {
    // Names are kept as people read them, whichever way they came (CLI, admin API, dashboard): without edge spaces.
    const name = given.trim();
    if (!visible(name)) throw new AccountError(errors.invalidParameter("name", "the account name must not be empty."));
    bounded("name", name, FIELD_LIMITS.name);
    this.plan(plan);
    const account: Account = { id: `acct_${randomBase62(16)}`, name, plan, status: "active", createdAt: new Date().toISOString() };
    await this.stores.accounts.createAccount(account);
    await this.stores.audit.record(context, {
      action: "account.created",
      accountId: account.id,
      target: `account:${account.id}`,
      detail: { name, plan },
    });
    return account;
  }

  /**
   * Creates a key and returns its secret: the only time it exists outside its
   * owner's hands. Refused for a suspended account and beyond the plan's cap of
   * unrevoked keys per mode (each key brings its own minute limit). `createdBy` is the member creating
   * it in the dashboard: removing that member revokes it. Without one it is the account's own key.
   */
  async createKey(
    context: AuditContext,
    accountId: string,
    mode: Mode,
    given?: string,
    createdBy: string | null = null,
  ): Promise<{ record: ApiKeyRecord; key: string }> {
    if (!isKeyMode(mode)) throw new AccountError(errors.invalidParameter("mode", `must be live or test, got '${String(mode)}'.`));
    const name = given?.trim();
    if (name !== undefined) {
      // A name is optional, but one given must say something: `--name "$UNSET"` is a mistake, not a nameless key.
      if (!visible(name))
        throw new AccountError(errors.invalidParameter("name", "the key name must not be empty; leave it out for a key without a name."));
      bounded("name", name, FIELD_LIMITS.keyName);
    }
    const account = await this.getAccount(accountId);
    // An account left on a plan the config no longer defines keeps the default cap.
    const maxKeys = findPlan(this.plans, account.plan)?.maxKeys ?? DEFAULT_MAX_KEYS;
    const secret = generateKey(mode);
    const record: ApiKeyRecord = {
      id: `key_${randomBase62(16)}`,
      accountId,
      name: name ?? null,
      mode,
      prefix: secret.prefix,
      createdAt: new Date().toISOString(),
      lastUsedAt: null,
      revokedAt: null,
      createdBy,
    };
    // A member's creations are also capped per day: revoked keys stay listed (and audited), so creating and revoking
    // without end would grow every key list without bound. The operator's (admin API, CLI) are not.
    const perDay = createdBy === null ? undefined : maxKeys * KEYS_PER_DAY_PER_CAP;
    switch (await this.stores.accounts.createKey(record, secret.hash, { unrevoked: maxKeys, perDay })) {
      case "created":
        await this.stores.audit.record(context, {
          action: "key.created",
          accountId,
          target: `key:${record.id}`,
          detail: { mode, ...(name === undefined ? {} : { name }) },
        });
        return { record, key: secret.key };
      case "no_account":
        throw noAccount(accountId);
      case "suspended":
        throw new AccountError(errors.keyCreationSuspended());
      case "limit_reached":
        throw new AccountError(errors.keyLimitReached(maxKeys, mode));
      case "daily_limit_reached":
        throw new AccountError(errors.dailyKeyLimitReached(perDay ?? 0, mode));
      case "no_member":
        // Removed while creating it: their session has ended with them.
        throw new AccountError(errors.notSignedIn());
    }
  }

  async listKeys(accountId: string): Promise<ApiKeyRecord[]> {
    await this.getAccount(accountId);
    return this.stores.accounts.listKeys(accountId);
  }

  listAccounts(): Promise<Account[]> {
    return this.stores.accounts.listAccounts();
  }

  async getAccount(id: string): Promise<Account> {
    const account = await this.stores.accounts.getAccount(id);
    if (account === undefined) throw noAccount(id);
    return account;
  }

  async changePlan(context: AuditContext, id: string, plan: string): Promise<Account> {
    this.plan(plan);
    const before = await this.getAccount(id);
    await this.ready();
    if (!(await this.stores.accounts.updateAccount(id, { plan }))) throw noAccount(id);
    // The broadcast follows the write whatever happens to the audit record: the nodes must hear of the change.
    try {
      if (before.plan !== plan) {
        await this.stores.audit.record(context, {
          action: "account.plan_changed",
          accountId: id,
          target: `account:${id}`,
          detail: { from: before.plan, to: plan },
        });
      }
    } finally {
      await this.changed();
    }
    return this.getAccount(id);
  }

  /** A suspended account's keys stop working on the next request; reactivating restores them. */
  async setStatus(context: AuditContext, id: string, status: Account["status"]): Promise<Account> {
    if (status !== "active" && status !== "suspended") {
      throw new AccountError(errors.invalidParameter("status", `must be active or suspended, got '${String(status)}'.`));
    }
    const before = await this.getAccount(id);
    await this.ready();
    if (!(await this.stores.accounts.updateAccount(id, { status }))) throw noAccount(id);
    try {
      if (before.status !== status) {
        await this.stores.audit.record(context, {
          action: status === "suspended" ? "account.suspended" : "account.reactivated",
          accountId: id,
          target: `account:${id}`,
        });
      }
    } finally {
      await this.changed();
    }
    return this.getAccount(id);
  }

  /** Revoking a revoked key changes nothing and records nothing. With `ofAccount`, another account's key is not found. */
  async revokeKey(context: AuditContext, keyId: string, ofAccount?: string): Promise<void> {
    const key = await this.stores.accounts.getKey(keyId);
    if (key === undefined || (ofAccount !== undefined && key.accountId !== ofAccount))
      throw new AccountError(errors.notFoundResource(`no key '${shortened(keyId)}'`));
    await this.ready();
    if (!(await this.stores.accounts.revokeKey(keyId, new Date().toISOString()))) {
      throw new AccountError(errors.notFoundResource(`no key '${shortened(keyId)}'`));
    }
    // Revoking again tells the nodes again: the way to repair a broadcast that did not reach them.
    try {
      if (key.revokedAt === null)
        await this.stores.audit.record(context, {
          action: "key.revoked",
          accountId: key.accountId,
          target: `key:${keyId}`,
          detail: { mode: key.mode },
        });
    } finally {
      await this.changed();
    }
  }
}

/**
 * A request an operator or member can correct (unknown account, bad plan name,
 * key cap, suspension): a catalogue error, so every API answers it the same way
 * and the CLI prints its message.
 */
export class AccountError extends ApiError {
  override name = "AccountError";
  constructor(error: ApiError) {
    super(error.status, error.type, error.code, error.message, error.param, error.headers);
  }

  get notFound(): boolean {
    return this.status === 404;
  }
}

const noAccount = (id: string): AccountError => new AccountError(errors.notFoundResource(`no account '${shortened(id)}'`));
