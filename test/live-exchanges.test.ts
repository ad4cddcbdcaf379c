import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LiveExchanges, type Expiring } from "../src/engines/remote/live-exchanges.js";

const exchange = (since: number): Expiring => ({ since, slot: -1, expire: () => undefined });
const bySince = (list: Expiring[]): number[] => list.map((e) => e.since).sort((x, y) => x - y);

describe("the remote engine's exchanges under way", () => {
  it("keeps each until it leaves, whichever order they leave in; a second leave changes nothing", () => {
    const live = new LiveExchanges();
    const [a, b, c, d] = [exchange(1), exchange(2), exchange(3), exchange(4)];
    for (const e of [a, b, c, d]) live.add(e);
    live.delete(b); // from the middle: the last takes its place
    live.delete(b);
    live.delete(a);
    assert.equal(live.size, 2);
    assert.equal(b.slot, -1);
    const left = live.takeStartedBefore(10);
    assert.deepEqual(bySince(left), [3, 4]);
    assert.equal(live.size, 0);
    assert.ok(left.every((e) => e.slot === -1));
  });

  it("takes out only those that began before the given time, and keeps the others in place", () => {
    const live = new LiveExchanges();
    const [early, late, earlier] = [exchange(2), exchange(9), exchange(1)];
    for (const e of [early, late, earlier]) live.add(e);
    assert.deepEqual(bySince(live.takeStartedBefore(5)), [1, 2]);
    assert.equal(live.size, 1);
    assert.equal(late.slot, 0);
    live.delete(late);
    assert.equal(live.size, 0);
  });
});
