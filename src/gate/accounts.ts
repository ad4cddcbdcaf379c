import { randomBase62 } from "../server/ids.js";
import type { Account, ApiKeyRecord, Mode, Store } from "../store/store.js";
import { generateKey } from "./api-keys.js";
import type { Plan } from "./plans.js";

/**
 * Account and key operations, shared by the CLI (and later the admin API and
 * dashboard) so there is one implementation of each.
 */
export class AccountService {
  constructor(private readonly store: Store, private readonly plans: Readonly<Record<string, Plan>>) {}

  async createAccount(name: string, plan: string): Promise<Account> {
    if (name.trim().length === 0) throw new AccountError("the account name must not be empty");
    if (!Object.hasOwn(this.plans, plan)) throw new AccountError(`unknown plan '${plan}' (plans: ${Object.keys(this.plans).join(", ")})`);
    const account: Account = { id: `acct_${randomBase62(16)}`, name, plan, status: "active", createdAt: new Date().toISOString() };
    await this.store.createAccount(account);
    return account;
  }

  /** Creates a key and returns its secret: the only time it exists outside its owner's hands. */
  async createKey(accountId: string, mode: Mode, name?: string): Promise<{ record: ApiKeyRecord; key: string }> {
    if (mode !== "live" && mode !== "test") throw new AccountError(`mode must be live or test, got '${String(mode)}'`);
    if ((await this.store.getAccount(accountId)) === undefined) throw new AccountError(`no account '${accountId}'`, true);
    const secret = generateKey(mode);
    const record: ApiKeyRecord = {
      id: `key_${randomBase62(16)}`, accountId, name: name ?? null, mode, prefix: secret.prefix,
      createdAt: new Date().toISOString(), lastUsedAt: null, revokedAt: null,
    };
    await this.store.createKey(record, secret.hash);
    return { record, key: secret.key };
  }

  async listKeys(accountId: string): Promise<ApiKeyRecord[]> {
    if ((await this.store.getAccount(accountId)) === undefined) throw new AccountError(`no account '${accountId}'`, true);
    return this.store.listKeys(accountId);
  }

  listAccounts(): Promise<Account[]> {
    return this.store.listAccounts();
  }

  async getAccount(id: string): Promise<Account> {
    const account = await this.store.getAccount(id);
    if (account === undefined) throw new AccountError(`no account '${id}'`, true);
    return account;
  }

  async changePlan(id: string, plan: string): Promise<Account> {
    if (!Object.hasOwn(this.plans, plan)) throw new AccountError(`unknown plan '${plan}' (plans: ${Object.keys(this.plans).join(", ")})`);
    if (!(await this.store.updateAccount(id, { plan }))) throw new AccountError(`no account '${id}'`, true);
    return this.getAccount(id);
  }

  /** A suspended account's keys stop working on the next request; reactivating restores them. */
  async setStatus(id: string, status: Account["status"]): Promise<Account> {
    if (status !== "active" && status !== "suspended") throw new AccountError(`status must be active or suspended, got '${String(status)}'`);
    if (!(await this.store.updateAccount(id, { status }))) throw new AccountError(`no account '${id}'`, true);
    return this.getAccount(id);
  }

  async revokeKey(keyId: string): Promise<void> {
    if (!(await this.store.revokeKey(keyId, new Date().toISOString()))) throw new AccountError(`no key '${keyId}'`, true);
  }
}

/** A request an operator can correct (unknown account, bad plan name). */
export class AccountError extends Error {
  override name = "AccountError";
  constructor(message: string, readonly notFound = false) {
    super(message);
  }
}
