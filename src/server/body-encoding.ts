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
 * The body a request's `Content-Encoding` says it is, decoded as it arrives.
 * The body limit holds for the decoded body: a small upload that inflates past
 * it is refused with 413 as soon as it does, never held in memory. A body that
 * is not what its header says is a 400. Either way the rest of the upload is
 * read and dropped rather than left in the socket.
 */
export function decodedBody(raw: IncomingMessage, payload: Readable, limit: number): Readable {
  const header = raw.headers["content-encoding"];
  if (header === undefined) return payload;
  const coding = header.trim().toLowerCase();
  if (coding === "" || coding === "identity") return payload;
  const decoder = DECODERS[coding]?.();
  if (decoder === undefined) {
    throw errors.invalidRequest(
      `Content-Encoding '${header.slice(0, 40)}' is not supported: send the body uncompressed, or as gzip, deflate or br (one coding).`,
    );
  }
  let decodedLength = 0;
  const decoded = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      decodedLength += chunk.length;
      callback(decodedLength > limit ? errors.requestTooLarge(limit) : null, chunk);
    },
  }) as DecodedBody;
  decoded.receivedEncodedLength = 0;
  payload.on("data", (chunk: Buffer) => (decoded.receivedEncodedLength += chunk.length));
  decoded.once("error", () => {
    payload.unpipe(decoder);
    decoder.destroy();
    payload.resume();
  });
  // The client leaving mid-body ends the decoded body too (the answer then goes to nobody).
  payload.once("error", (error) => decoded.destroy(error));
  decoder.once("error", (error) =>
    decoded.destroy(errors.invalidRequest(`The body is not valid ${coding} (its Content-Encoding): ${error.message}.`)),
  );
  payload.pipe(decoder).pipe(decoded);
  return decoded;
}
