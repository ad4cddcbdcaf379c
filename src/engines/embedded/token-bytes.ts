import type { LlamaModel, Token } from "node-llama-cpp";

/** GPT-2's byte-level BPE writes each byte as one printable character; this is the way back. */
function byteLevelDecoder(): Map<string, number> {
  const printable = (b: number): boolean => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const map = new Map<string, number>();
  let shifted = 0;
  for (let b = 0; b < 256; b++) map.set(String.fromCodePoint(printable(b) ? b : 256 + shifted++), b);
  return map;
}

/** A SentencePiece byte-fallback token's vocabulary piece: one raw byte of a character split over tokens. */
const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

interface TokenStrings {
  getTokenString(token: number): string;
}

/** A model's tokens' bytes, by token; `null` for a control token. */
export type VocabularyBytes = ReadonlyArray<Uint8Array | null>;

function readVocabularyBytes(model: LlamaModel): VocabularyBytes | undefined {
  // node-llama-cpp (pinned) keeps a token's vocabulary piece internal: reached through its binding when that has the expected shape.
  const native = (model as unknown as { _model?: Partial<TokenStrings> })._model;
  const size = (model.fileInfo.metadata as { tokenizer?: { ggml?: { tokens?: readonly string[] } } }).tokenizer?.ggml?.tokens?.length;
  const type = model.vocabularyType as string;
  if (typeof native?.getTokenString !== "function" || size === undefined || (type !== "spm" && type !== "bpe")) return undefined;
  const decoder = type === "bpe" ? byteLevelDecoder() : undefined;
  const bytes: Array<Uint8Array | null> = [];
  for (let token = 0; token < size; token++) {
    const attributes = model.getTokenAttributes(token as Token);
    if (attributes.control || attributes.unknown || model.isSpecialToken(token as Token)) {
      bytes.push(null);
      continue;
    }
    const piece = native.getTokenString(token);
    const byte = attributes.byte ? BYTE_PIECE.exec(piece) : null;
    if (byte !== null) bytes.push(Uint8Array.of(Number.parseInt(byte[1]!, 16)));
    else if (decoder === undefined) bytes.push(Buffer.from(piece.replaceAll("\u2581", " "), "utf8"));
    else {
      const raw = [...piece].map((c) => decoder.get(c));
      // A piece outside the byte-level spelling (an added token written as text) is its own UTF-8.
      bytes.push(raw.every((b) => b !== undefined) ? Uint8Array.from(raw as number[]) : Buffer.from(piece, "utf8"));
    }
  }
  return bytes;
}

const cache = new WeakMap<LlamaModel, VocabularyBytes | null>();

/**
 * Every token's bytes, read from the vocabulary once per model (node-llama-cpp's
 * detokenizer turns a partial character into U+FFFD, so it cannot say); `null`
 * for a control token, which writes no text. Undefined for vocabularies whose
 * pieces are not bytes in a known spelling.
 */
export function vocabularyBytes(model: LlamaModel): VocabularyBytes | undefined {
  let bytes = cache.get(model);
  if (bytes === undefined) {
    bytes = readVocabularyBytes(model) ?? null;
    cache.set(model, bytes);
  }
  return bytes ?? undefined;
}
