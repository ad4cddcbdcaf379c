import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { setImmediate as nextTurn } from "node:timers/promises";
import { createStore } from "../src/store/create-store.js";
import type { Stores } from "../src/store/store.js";
import { tempDir } from "./helpers/fixtures.js";

/**
 * The SQLite store caches verified keys and checks once per event-loop turn
 * whether another connection (the CLI) changed the file. A request is read in
 * a turn of its own, so a change committed before it arrives must reach it.
 */
describe("SQLite key cache: another connection's changes", () => {
  const dataDir = tempDir("alveare-key-cache-");
  const opened: Stores[] = [];
  after(async () => {
    for (const s of opened) await s.close();
  });

  async function setUp(): Promise<{ server: Stores; cli: Stores; keyId: string; hash: string; accountId: string }> {
    const server = await createStore({ dataDir });
    const cli = await createStore({ dataDir });
    opened.push(server, cli);
    const accountId = `acct_${opened.length}`;
    await cli.accounts.createAccount({ id: accountId, name: "A", plan: "free", status: "active", createdAt: new Date().toISOString() });
    const keyId = `key_${opened.length}`;
    const hash = `hash_${opened.length}`;
    const made = await cli.accounts.createKey(
      {
        id: keyId,
        accountId,
        name: null,
        mode: "live",
        prefix: "alv_live_x",
        createdAt: new Date().toISOString(),
        lastUsedAt: null,
        revokedAt: null,
        createdBy: null,
      },
      hash,
      { unrevoked: 10 },
    );
    assert.equal(made, "created");
    return { server, cli, keyId, hash, accountId };
  }

  it("sees a key revoked by another connection in the next turn, with the key cached before", async () => {
    const { server, cli, keyId, hash } = await setUp();
    await nextTurn();
    assert.equal((await server.accounts.findKeyByHash(hash))?.key.revokedAt, null);
    assert.equal((await server.accounts.findKeyByHash(hash))?.key.revokedAt, null); // served from the cache
    await cli.accounts.revokeKey(keyId, new Date().toISOString());
    await nextTurn();
    assert.notEqual((await server.accounts.findKeyByHash(hash))?.key.revokedAt, null);
  });

  it("sees an account suspended by another connection in the next turn", async () => {
    const { server, cli, hash, accountId } = await setUp();
    await nextTurn();
    assert.equal((await server.accounts.findKeyByHash(hash))?.account.status, "active");
    await cli.accounts.updateAccount(accountId, { status: "suspended" });
    await nextTurn();
    assert.equal((await server.accounts.findKeyByHash(hash))?.account.status, "suspended");
  });

  it("sees this connection's own revocation at once, in the same turn", async () => {
    const { server, keyId, hash } = await setUp();
    await nextTurn();
    assert.equal((await server.accounts.findKeyByHash(hash))?.key.revokedAt, null);
    await server.accounts.revokeKey(keyId, new Date().toISOString());
    assert.notEqual((await server.accounts.findKeyByHash(hash))?.key.revokedAt, null);
  });
});
