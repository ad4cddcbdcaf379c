import type { IncomingMessage } from "node:http";
import { type Readable, Transform } from "node:stream";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import { errors } from "../errors.js";

/** The content codings a request body may arrive in, each with its decoder. */
const DECODERS: Readonly<Record<string, () => Transform>> = {
  gzip: createGunzip,
  "x-gzip": createGunzip,
  deflate: createInflate,
  br: createBrotliDecompress,
};

/** A decoded body as Fastify reads it: `receivedEncodedLength` is what arrived on the wire (checked against Content-Length). */
type DecodedBody = Transform & { receivedEncodedLength: number };

/**
 * Compressed bodies decoded at once, at most. Each holds a decoder's window
 * (up to a few MB for br) and its decoded bytes (up to the body limit) for as
 * long as its client takes to finish the upload: a few bytes from a slow
 * client can hold megabytes, so the number of them is bounded. Uploads are
 * usually read within a millisecond, so only a flood of slow ones meets it.
 */
export const MAX_DECODING_BODIES = 64;
let decoding = 0;

/** Whether the request carries a body at all (a length above 0, or chunks). */
const hasBody = (raw: IncomingMessage): boolean =>
  raw.headers["transfer-encoding"] !== undefined || (raw.headers["content-length"] !== undefined && raw.headers["content-length"] !== "0");

/**
 * The body a request's `Content-Encoding` says it is, decoded as it arrives.
 * The body limit holds for the decoded body: a small upload that inflates past
 * it is refused with 413 as soon as it does. A body that is not what its
 * header says is a 400. Either way the rest of the upload is read and dropped
 * rather than left in the socket. A request without a body (or a GET or HEAD,
 * whose body nothing reads) is left as it is, whatever the header says.
 */
export function decodedBody(raw: IncomingMessage, payload: Readable, limit: number): Readable {
  const header = raw.headers["content-encoding"];
  if (header === undefined || raw.method === "GET" || raw.method === "HEAD" || !hasBody(raw)) return payload;
  const coding = header.trim().toLowerCase();
  if (coding === "" || coding === "identity") return payload;
  const makeDecoder = DECODERS[coding];
  if (makeDecoder === undefined) {
    throw errors.invalidRequest(
      `Content-Encoding '${header.slice(0, 40)}' is not supported: send the body uncompressed, or as gzip, deflate or br (one coding).`,
    );
  }
  if (decoding >= MAX_DECODING_BODIES) throw errors.decodersBusy();
  decoding++;
  const decoder = makeDecoder();
  let decodedLength = 0;
  const decoded = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      decodedLength += chunk.length;
      callback(decodedLength > limit ? errors.requestTooLarge(limit) : null, chunk);
    },
  }) as DecodedBody;
  decoded.receivedEncodedLength = 0;
  payload.on("data", (chunk: Buffer) => (decoded.receivedEncodedLength += chunk.length));
  decoded.once("close", () => decoding--);
  decoded.once("error", () => {
    payload.unpipe(decoder);
    decoder.destroy();
    payload.resume();
  });
  // The client leaving mid-body (or a timeout closing it) ends the decoded body too: the answer goes to nobody.
  payload.once("error", (error) => decoded.destroy(error));
  raw.once("close", () => {
    if (!raw.complete) decoded.destroy(new Error("the client left before its body arrived"));
  });
  decoder.once("error", (error) =>
    decoded.destroy(errors.invalidRequest(`The body is not valid ${coding} (its Content-Encoding): ${error.message}.`)),
  );
  payload.pipe(decoder).pipe(decoded);
  return decoded;
}

/** Compressed bodies being decoded now (tests, metrics). */
export const decodingBodies = (): number => decoding;
