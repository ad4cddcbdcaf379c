import type { FastifyReply, FastifyRequest } from "fastify";
import type { IncomingMessage } from "node:http";
import { PassThrough, type Readable, type Transform } from "node:stream";
import { createBrotliDecompress, createGunzip, createInflate, type Zlib } from "node:zlib";
import { errors } from "../errors.js";
import { awaitsContinue } from "./http-guards.js";

/** The content codings a request body may arrive in, each with its decoder. */
const DECODERS: Readonly<Record<string, () => Transform & Zlib>> = {
  gzip: createGunzip,
  "x-gzip": createGunzip,
  deflate: createInflate,
  br: createBrotliDecompress,
};

/** A decoded body as Fastify reads it: `receivedEncodedLength` is what arrived on the wire (checked against Content-Length). */
type DecodedBody = PassThrough & { receivedEncodedLength: number };

/**
 * Compressed bodies decoded at once, at most. Each holds a decoder's window
 * (up to a few MB for br) and its decoded bytes (up to the body limit) for as
 * long as its client takes to finish the upload: a few bytes from a slow
 * client can hold megabytes, so the number of them is bounded. Uploads are
 * usually read within a millisecond, so only a flood of slow ones meets it.
 */
export const MAX_DECODING_BODIES = 64;
/**
 * The dashboard's own places, apart: it reads a body before any sign-in is
 * checked (a sign-in's body is what signs in), so anyone may hold these, and
 * they must not be the API's, whose bodies are read only once a key is.
 */
export const MAX_DECODING_DASHBOARD_BODIES = 8;

/** Places for compressed bodies being decoded: how many there are, and how many are taken. */
interface DecodeSlots {
  readonly max: number;
  taken: number;
}
const API_SLOTS: DecodeSlots = { max: MAX_DECODING_BODIES, taken: 0 };
const DASHBOARD_SLOTS: DecodeSlots = { max: MAX_DECODING_DASHBOARD_BODIES, taken: 0 };

/**
 * A body nothing will read: an unknown route's (its answer is a 404, or a 413 past the limit) and a CORS
 * preflight's (browsers send none; it needs no key). Such a body is read and dropped, never decoded or parsed.
 */
export const bodyUnused = (request: FastifyRequest): boolean => request.is404 || request.method === "OPTIONS";

/** The dashboard's routes (their template, never the URL as sent, which may be spelled otherwise) take their own places. */
const slotsFor = (request: FastifyRequest): DecodeSlots =>
  request.routeOptions.url?.startsWith("/dashboard/") === true ? DASHBOARD_SLOTS : API_SLOTS;

/** Methods whose body nothing reads (Fastify parses none for them). */
const BODYLESS_METHODS = new Set(["GET", "HEAD", "TRACE"]);

/** Whether a body will be read and decoded: one is announced, within the limit (Fastify refuses a larger one unread). */
function readsBody(raw: IncomingMessage, limit: number): boolean {
  if (BODYLESS_METHODS.has(raw.method ?? "")) return false;
  const length = raw.headers["content-length"];
  if (length === undefined) return raw.headers["transfer-encoding"] !== undefined;
  return length !== "0" && !announcedOverLimit(raw, limit);
}

/** A body whose Content-Length is past the limit: Fastify refuses it (413) without reading it. */
const announcedOverLimit = (raw: IncomingMessage, limit: number): boolean => Number(raw.headers["content-length"]) > limit;

/**
 * Asks a client that sent `Expect: 100-continue` for its body once the request has got as far as reading it (its
 * key checked and its coding readable: a 401 or 400 needs no upload), unless the body is announced over the limit:
 * its 413 comes without it. Any other body is read, if only to be dropped (an unknown route's), so it is asked for.
 */
export function continueIfRead(request: FastifyRequest, reply: FastifyReply): void {
  const raw = request.raw;
  if (raw.headers.expect === undefined || !awaitsContinue(raw)) return;
  if (!announcedOverLimit(raw, request.routeOptions.bodyLimit)) reply.raw.writeContinue();
}

/**
 * The body a request's `Content-Encoding` says it is, decoded as it arrives.
 * Fastify holds the decoded body to the body limit (413 as soon as it grows
 * past it); a body that is not what its header says is a 400. A request whose
 * body is not read (none, a GET, HEAD or TRACE, one announced over the limit)
 * is left as it is, whatever the header says. However the request ends, even
 * answered before its body was read (404, 415), the decoder goes and the rest
 * of the upload is read and dropped, so the connection can serve the next one.
 */
export function decodedBody(request: FastifyRequest, reply: FastifyReply, payload: Readable): Readable {
  const raw = request.raw;
  const header = raw.headers["content-encoding"];
  if (header === undefined || bodyUnused(request) || !readsBody(raw, request.routeOptions.bodyLimit)) return payload;
  // A client gone while an earlier hook awaited (authentication) has closed both already: nothing would end a decoder.
  if (raw.destroyed || reply.raw.destroyed) return payload;
  const coding = header.trim().toLowerCase();
  if (coding === "" || coding === "identity") return payload;
  const makeDecoder = DECODERS[coding];
  if (makeDecoder === undefined) {
    throw errors.invalidRequest(
      `Content-Encoding '${header.slice(0, 40)}' is not supported: send the body uncompressed, or as gzip, deflate or br (one coding).`,
    );
  }
  const slots = slotsFor(request);
  if (slots.taken >= slots.max) {
    throw errors.overloaded(1, "Too many compressed request bodies are being decoded at once. Retry shortly, or send the body uncompressed.");
  }
  slots.taken++;
  const decoder = makeDecoder();
  const decoded = new PassThrough() as DecodedBody;
  decoded.receivedEncodedLength = 0;
  payload.on("data", (chunk: Buffer) => (decoded.receivedEncodedLength += chunk.length));
  // One end for every way a request ends: read whole, refused, answered unread, or its client gone.
  decoded.once("close", () => {
    slots.taken--;
    if (decoded.readableEnded) return;
    payload.unpipe(decoder);
    decoder.destroy();
    payload.resume();
  });
  reply.raw.once("close", () => decoded.destroy());
  payload.once("error", (error) => decoded.destroy(error));
  decoder.once("error", (error) =>
    decoded.destroy(errors.invalidRequest(`The body is not valid ${coding} (its Content-Encoding): ${error.message}.`)),
  );
  // The body ends when the upload and the compressed stream both have: deflate and br would end at the
  // stream's end and drop what follows (so a body's fate depended on how its packets fell).
  let ends = 0;
  const ended = (): void => {
    if (++ends < 2) return;
    if (decoder.bytesWritten === decoded.receivedEncodedLength) decoded.end();
    else decoded.destroy(errors.invalidRequest(`The body has data after the end of its ${coding} stream.`));
  };
  decoder.once("end", ended);
  payload.once("end", ended);
  payload.pipe(decoder).pipe(decoded, { end: false });
  return decoded;
}

/** Compressed bodies being decoded now, the dashboard's included (tests). */
export const decodingBodies = (): number => API_SLOTS.taken + DASHBOARD_SLOTS.taken;
