import { TensorType, tensorByteSize, writeGguf, type MetadataValue, type TensorSpec } from "./gguf-writer.js";

/** Shape of a llama-architecture model. */
interface LlamaShape {
  layers: number;
  embedding: number;
  heads: number;
  /** Key/value heads (grouped-query attention); defaults to `heads`. */
  kvHeads?: number;
  feedForward: number;
  vocabulary: number;
  contextLength?: number;
}

export interface RandomLlamaOptions extends LlamaShape {
  /** Weight encoding: F32 for tiny test models, Q8_0 for realistic ones. */
  weights?: "f32" | "q8_0";
  /** Embed a ChatML chat template (default true); false exercises the fallback path. */
  chatTemplate?: boolean;
  seed?: number;
  name?: string;
}

export const TINY_LLAMA: LlamaShape = { layers: 2, embedding: 64, heads: 4, feedForward: 128, vocabulary: 512 };
/** About 134M parameters: a small but realistic shape for benchmarks. */
export const BENCH_LLAMA: LlamaShape = { layers: 12, embedding: 768, heads: 12, feedForward: 2048, vocabulary: 32000 };

const SPECIAL_TOKENS = { unknown: "<unk>", bos: "<s>", eos: "</s>", imStart: "<|im_start|>", imEnd: "<|im_end|>" } as const;

const CHATML_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** Words whose pieces make ordinary English tokenize into a few tokens each. */
const WORDS = (
  "the a an and or of to in is it that this for on with as was be are by at from not but have has " +
  "positive negative neutral good bad great love hate product best purchase ever summary summarise " +
  "answer question context text json name value user assistant system you your we our they code function " +
  "return true false null yes no revenue quarter grew year data model hello world please thank"
).split(" ");

const enum TokenKind { Normal = 1, Unknown = 2, Control = 3, Byte = 6 }

interface Vocabulary { tokens: string[]; scores: number[]; types: number[] }

/**
 * A SentencePiece-style vocabulary: control tokens, the 256 byte-fallback tokens
 * (so any UTF-8 text can be tokenized), printable characters, then word pieces
 * built prefix by prefix so the SPM merge procedure reaches whole words, then
 * filler pieces up to the requested size.
 */
export function buildVocabulary(size: number): Vocabulary {
  const tokens: string[] = [];
  const types: number[] = [];
  const seen = new Set<string>();
  const add = (t: string, kind: TokenKind): void => {
    if (seen.has(t) || tokens.length >= size) return;
    seen.add(t);
    tokens.push(t);
    types.push(kind);
  };
  add(SPECIAL_TOKENS.unknown, TokenKind.Unknown);
  add(SPECIAL_TOKENS.bos, TokenKind.Control);
  add(SPECIAL_TOKENS.eos, TokenKind.Control);
  add(SPECIAL_TOKENS.imStart, TokenKind.Control);
  add(SPECIAL_TOKENS.imEnd, TokenKind.Control);
  for (let b = 0; b < 256; b++) add(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`, TokenKind.Byte);
  const minimum = tokens.length + 95;
  if (size < minimum) throw new Error(`vocabulary must hold at least ${minimum} tokens`);
  add("\u2581", TokenKind.Normal);
  for (let c = 0x21; c < 0x7f; c++) add(String.fromCharCode(c), TokenKind.Normal);
  for (const word of WORDS) {
    const piece = `\u2581${word}`;
    for (let end = 2; end <= piece.length; end++) add(piece.slice(0, end), TokenKind.Normal);
  }
  const letters = "etaoinshrdlucmfwypvbgkqjxz";
  for (let n = 0; tokens.length < size; n++) {
    // Base-26 names: "ee", "et", ... then longer; each prefix of a filler is itself a filler.
    let s = "";
    for (let k = n + letters.length; k > 0; k = Math.floor(k / letters.length) - 1) s = (letters[k % letters.length] ?? "") + s;
    add(n % 2 === 0 ? `\u2581${s}` : s, TokenKind.Normal);
  }
  // Longer pieces score higher so merges prefer them, as in trained SPM models.
  const scores = tokens.map((t, i) => (types[i] === TokenKind.Normal ? -1000 + [...t].length * 10 - i / size : 0));
  return { tokens, scores, types };
}

/** mulberry32: small, fast, seedable; fixtures must be reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function float32ToFloat16Bits(value: number): number {
  const f = new Float32Array([value]);
  const x = new Uint32Array(f.buffer)[0] ?? 0;
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 127 + 15;
  const mant = x & 0x7fffff;
  if (exp <= 0) return sign;
  if (exp >= 31) return sign | 0x7c00;
  return sign | (exp << 10) | (mant >>> 13);
}

/** Uniform weights in [-amplitude, amplitude]; amplitude 0.035 gives a std near 0.02. */
const AMPLITUDE = 0.035;

function randomTensor(rand: () => number, type: TensorType, elements: number): Uint8Array {
  const out = new Uint8Array(tensorByteSize(type, elements));
  if (type === TensorType.F32) {
    const f = new Float32Array(out.buffer);
    for (let i = 0; i < elements; i++) f[i] = (rand() * 2 - 1) * AMPLITUDE;
    return out;
  }
  if (type === TensorType.Q8_0) {
    const view = new DataView(out.buffer);
    const scale = float32ToFloat16Bits(AMPLITUDE / 127);
    const blocks = elements / 32;
    for (let b = 0; b < blocks; b++) {
      const base = b * 34;
      view.setUint16(base, scale, true);
      // Four int8 values per random draw keeps generation of 100M+ weights quick.
      for (let j = 0; j < 32; j += 4) {
        const r = (rand() * 4294967296) >>> 0;
        out[base + 2 + j] = r & 0xff;
        out[base + 3 + j] = (r >>> 8) & 0xff;
        out[base + 4 + j] = (r >>> 16) & 0xff;
        out[base + 5 + j] = (r >>> 24) & 0xff;
      }
    }
    return out;
  }
  throw new Error(`unsupported tensor type ${type}`);
}

function ones(elements: number): Uint8Array {
  return new Uint8Array(new Float32Array(elements).fill(1).buffer);
}

export function parameterCount(shape: LlamaShape): number {
  const kvDim = (shape.embedding / shape.heads) * (shape.kvHeads ?? shape.heads);
  const perLayer =
    2 * shape.embedding +
    2 * shape.embedding * shape.embedding +
    2 * shape.embedding * kvDim +
    3 * shape.embedding * shape.feedForward;
  return shape.layers * perLayer + 2 * shape.vocabulary * shape.embedding + shape.embedding;
}

/**
 * Writes a llama-architecture GGUF with a working SPM tokenizer and random weights.
 * llama.cpp loads and generates from it like from any trained model; the text is noise.
 */
export async function writeRandomLlama(path: string, options: RandomLlamaOptions): Promise<void> {
  const { layers, embedding: e, heads, feedForward: ff, vocabulary } = options;
  const kvHeads = options.kvHeads ?? heads;
  if (e % heads !== 0) throw new Error("embedding must be divisible by heads");
  if (heads % kvHeads !== 0) throw new Error("heads must be divisible by kvHeads");
  const headDim = e / heads;
  const kvDim = headDim * kvHeads;
  const type = options.weights === "q8_0" ? TensorType.Q8_0 : TensorType.F32;
  const rand = prng(options.seed ?? 1);
  const vocab = buildVocabulary(vocabulary);

  const md = new Map<string, MetadataValue>([
    ["general.architecture", { type: "string", value: "llama" }],
    ["general.name", { type: "string", value: options.name ?? "alveare-random-llama" }],
    ["general.alignment", { type: "u32", value: 32 }],
    ["llama.context_length", { type: "u32", value: options.contextLength ?? 2048 }],
    ["llama.embedding_length", { type: "u32", value: e }],
    ["llama.block_count", { type: "u32", value: layers }],
    ["llama.feed_forward_length", { type: "u32", value: ff }],
    ["llama.rope.dimension_count", { type: "u32", value: headDim }],
    ["llama.attention.head_count", { type: "u32", value: heads }],
    ["llama.attention.head_count_kv", { type: "u32", value: kvHeads }],
    ["llama.attention.layer_norm_rms_epsilon", { type: "f32", value: 1e-5 }],
    ["tokenizer.ggml.model", { type: "string", value: "llama" }],
    ["tokenizer.ggml.tokens", { type: "string[]", value: vocab.tokens }],
    ["tokenizer.ggml.scores", { type: "f32[]", value: vocab.scores }],
    ["tokenizer.ggml.token_type", { type: "i32[]", value: vocab.types }],
    ["tokenizer.ggml.unknown_token_id", { type: "u32", value: 0 }],
    ["tokenizer.ggml.bos_token_id", { type: "u32", value: 1 }],
    ["tokenizer.ggml.eos_token_id", { type: "u32", value: options.chatTemplate === false ? 2 : 4 }],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: options.chatTemplate === false }],
    ["tokenizer.ggml.add_eos_token", { type: "bool", value: false }],
  ]);
  if (options.chatTemplate !== false) md.set("tokenizer.chat_template", { type: "string", value: CHATML_TEMPLATE });

  const matrix = (name: string, cols: number, rows: number): TensorSpec => ({
    name, dims: [cols, rows], type, data: () => randomTensor(rand, type, cols * rows),
  });
  const norm = (name: string): TensorSpec => ({ name, dims: [e], type: TensorType.F32, data: () => ones(e) });

  const tensors: TensorSpec[] = [matrix("token_embd.weight", e, vocabulary)];
  for (let l = 0; l < layers; l++) {
    tensors.push(
      norm(`blk.${l}.attn_norm.weight`),
      matrix(`blk.${l}.attn_q.weight`, e, e),
      matrix(`blk.${l}.attn_k.weight`, e, kvDim),
      matrix(`blk.${l}.attn_v.weight`, e, kvDim),
      matrix(`blk.${l}.attn_output.weight`, e, e),
      norm(`blk.${l}.ffn_norm.weight`),
      matrix(`blk.${l}.ffn_gate.weight`, e, ff),
      matrix(`blk.${l}.ffn_up.weight`, e, ff),
      matrix(`blk.${l}.ffn_down.weight`, ff, e),
    );
  }
  tensors.push(norm("output_norm.weight"), matrix("output.weight", e, vocabulary));
  await writeGguf(path, md, tensors);
}

interface RandomLoraOptions {
  /** The base model's shape: the adapter's matrices must fit its tensors. */
  base: LlamaShape;
  rank?: number;
  alpha?: number;
  seed?: number;
}

/**
 * Writes a LoRA adapter GGUF for a llama of the given shape, adapting every
 * layer's attention query and output projections with random low-rank
 * matrices — enough to change what the model generates, as a real adapter does.
 */
export async function writeRandomLora(path: string, options: RandomLoraOptions): Promise<void> {
  const { base } = options;
  const rank = options.rank ?? 8;
  const rand = prng(options.seed ?? 2);
  const md = new Map<string, MetadataValue>([
    ["general.architecture", { type: "string", value: "llama" }],
    ["general.type", { type: "string", value: "adapter" }],
    ["general.name", { type: "string", value: "alveare-random-lora" }],
    ["general.alignment", { type: "u32", value: 32 }],
    ["adapter.type", { type: "string", value: "lora" }],
    ["adapter.lora.alpha", { type: "f32", value: options.alpha ?? 16 }],
  ]);
  const e = base.embedding;
  // lora_a maps the input (row length e) down to `rank`; lora_b maps `rank` up to the output.
  const pair = (name: string): TensorSpec[] => [
    { name: `${name}.lora_a`, dims: [e, rank], type: TensorType.F32, data: () => randomTensor(rand, TensorType.F32, e * rank) },
    { name: `${name}.lora_b`, dims: [rank, e], type: TensorType.F32, data: () => randomTensor(rand, TensorType.F32, rank * e) },
  ];
  const tensors: TensorSpec[] = [];
  for (let l = 0; l < base.layers; l++) tensors.push(...pair(`blk.${l}.attn_q.weight`), ...pair(`blk.${l}.attn_output.weight`));
  await writeGguf(path, md, tensors);
}
