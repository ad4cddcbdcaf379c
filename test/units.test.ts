import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { readSseData, SseEventTooLargeError } from "../src/api/sse.js";
import { SequencePool } from "../src/engines/embedded/sequence-pool.js";
import { labelGrammar } from "../src/engines/embedded/grammars.js";
import { StopScanner } from "../src/engines/stop-scanner.js";
import { ApiError, errors } from "../src/errors.js";

describe("StopScanner", () => {
  it("never releases a stop string, even split across pieces", () => {
    const s = new StopScanner(["\nUser:"]);
    const out = ["Hello", " there\nUs", "er: more"].map((p) => s.push(p)).join("") + s.flush();
    assert.equal(out, "Hello there");
    assert.equal(s.stopped, true);
  });
  it("releases held text that turned out not to be a stop", () => {
    const s = new StopScanner(["END"]);
    assert.equal(s.push("the EN"), "the ");
    assert.equal(s.push("D? no, ENDING"), "");
    assert.equal(s.stopped, true);
    const t = new StopScanner(["END"]);
    assert.equal(t.push("xE") + t.push("nd") + t.flush(), "xEnd");
    assert.equal(t.stopped, false);
  });
  it("cuts at the earliest of several stops", () => {
    const s = new StopScanner(["bb", "a"]);
    assert.equal(s.push("xxbbya"), "xx");
  });
  it("passes everything through without stops", () => {
    const s = new StopScanner([]);
    assert.equal(s.push("abc"), "abc");
  });
});

describe("SequencePool", () => {
  const signal = new AbortController().signal;
  it("drains the new requests waiting, not the other choices of running ones", async () => {
    const pool = new SequencePool(["a"], 10);
    const held = await pool.acquire(signal);
    const newRequest = pool.acquire(signal);
    const otherChoice = pool.acquire(signal, undefined, false);
    pool.drain(errors.notServing("shutting_down", 1));
    await assert.rejects(newRequest, (e: ApiError) => e.code === "overloaded");
    assert.equal(pool.queued, 1, "the choice keeps its place");
    pool.release(held);
    assert.equal(await otherChoice, "a");
  });
  it("serves waiters first come, first served", async () => {
    const pool = new SequencePool(["a"], 10);
    const first = await pool.acquire(signal);
    const order: number[] = [];
    const waits = [1, 2, 3].map((n) =>
      pool.acquire(signal).then((item) => {
        order.push(n);
        return item;
      }),
    );
    pool.release(first);
    pool.release(await waits[0]!);
    pool.release(await waits[1]!);
    await waits[2];
    assert.deepEqual(order, [1, 2, 3]);
  });
  it("lets a new request go before the further choices of a running one, every other time", async () => {
    const pool = new SequencePool(["a"], 10);
    const item = await pool.acquire(signal);
    const order: string[] = [];
    const wait = (name: string, bounded: boolean): Promise<string> =>
      pool.acquire(signal, undefined, bounded).then((got) => {
        order.push(name);
        return got;
      });
    // A request's three further choices queued on its arrival, then two new requests.
    const waits = [wait("choice 1", false), wait("choice 2", false), wait("choice 3", false), wait("request 1", true), wait("request 2", true)];
    // Each holder in turn gives the one item back.
    for (let served = 0; served < waits.length; served++) {
      pool.release(item);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(waits);
    assert.deepEqual(order, ["request 1", "choice 1", "request 2", "choice 2", "choice 3"]);
  });
  it("keeps a waiting choice's turn when no new request is ready behind it", async () => {
    const pool = new SequencePool(["a"], 10);
    const held = await pool.acquire(signal);
    const choice = pool.acquire(signal, undefined, false);
    const place = pool.reserve(signal);
    pool.release(held);
    assert.equal(await choice, "a", "the new request behind it is still preparing: the choice goes first");
    place.cancel();
  });
  it("answers 503 overloaded with Retry-After when the queue is full", async () => {
    const pool = new SequencePool(["a"], 1);
    await pool.acquire(signal);
    void pool.acquire(signal);
    await assert.rejects(
      pool.acquire(signal),
      (e: unknown) => e instanceof ApiError && e.status === 503 && e.code === "overloaded" && e.headers["retry-after"] === "1",
    );
  });
  it("drops a waiter whose client went away", async () => {
    const pool = new SequencePool(["a"], 5);
    const held = await pool.acquire(signal);
    const gone = new AbortController();
    const waiting = pool.acquire(gone.signal);
    gone.abort(new Error("gone"));
    await assert.rejects(waiting, /gone/);
    assert.equal(pool.queued, 0);
    pool.release(held);
    assert.equal(pool.available, 1);
  });
  it("hands a waiter an item even when its preference fails: a picker that throws costs the preference, not the request", async () => {
    const pool = new SequencePool(["a", "b"], 5);
    const failing = (): number => {
      throw new Error("disposed");
    };
    assert.equal(await pool.acquire(signal, failing), "b", "at once: the most recently released");
    const held = await pool.acquire(signal);
    const waiting = pool.acquire(signal, failing);
    pool.release(held);
    assert.equal(await waiting, "a", "and when it waited, on a release");
    assert.deepEqual([pool.queued, pool.available], [0, 0]);
  });
});

describe("label grammar", () => {
  it("quotes labels as GBNF literals", () => {
    assert.equal(labelGrammar(["a", 'say "hi"']), 'root ::= "a" | "say \\"hi\\""');
  });
});

describe("readSseData", () => {
  it("joins events split across chunks and ignores comments", async () => {
    async function* chunks(): AsyncGenerator<Uint8Array> {
      const enc = new TextEncoder();
      for (const part of [": keep-alive\n\nda", 'ta: {"a":1}\r\n\r\ndata: x\n', "data: y\n\n", "data: [DONE]"]) yield enc.encode(part);
    }
    const out: string[] = [];
    for await (const d of readSseData(chunks())) out.push(d);
    assert.deepEqual(out, ['{"a":1}', "x\ny", "[DONE]"]);
  });
  it("reads a CRLF split across two reads as one line end", async () => {
    async function* chunks(): AsyncGenerator<Uint8Array> {
      const enc = new TextEncoder();
      for (const part of ["data: a\r", "\ndata: b\r", "\n\r", "\ndata: c\r", "\r"]) yield enc.encode(part);
    }
    const out: string[] = [];
    for await (const d of readSseData(chunks())) out.push(d);
    // Two CRLFs read as four line ends would end the first event after "a" and after "b".
    assert.deepEqual(out, ["a\nb", "c"]);
  });
  it("stops at an event over its bound, whether one line that never ends or many data lines", async () => {
    const read = async (parts: string[]): Promise<string[]> => {
      async function* chunks(): AsyncGenerator<Uint8Array> {
        for (const part of parts) yield new TextEncoder().encode(part);
      }
      const out: string[] = [];
      for await (const d of readSseData(chunks(), 20)) out.push(d);
      return out;
    };
    assert.deepEqual(await read(["data: 0123456789\n\n", "data: 0123", "456789\n\n"]), ["0123456789", "0123456789"]);
    await assert.rejects(read(["data: 0123456789", "0123456789", "0123456789"]), SseEventTooLargeError);
    await assert.rejects(read(["data: 0123456789\n", "data: 0123456789\n", "data: 0\n\n"]), SseEventTooLargeError);
  });
});

describe("error messages", () => {
  it("count requests at once in the right number", () => {
    assert.match(
      errors.concurrencyLimited(1, 1000).message,
      /^Concurrency limit reached: 1 request at once for this API key\. Retry when it has finished\.$/,
    );
    assert.match(errors.concurrencyLimited(3, 1000).message, /: 3 requests at once .* Retry when one of them has finished\.$/);
  });
});
