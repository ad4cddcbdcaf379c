import { open, type FileHandle } from "node:fs/promises";

/** GGUF metadata value types (gguf.h). */
const enum ValueType {
  Uint32 = 4,
  Int32 = 5,
  Float32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
}

/** Tensor element types we can write (ggml.h numbering). */
export const enum TensorType {
  F32 = 0,
  F16 = 1,
  Q8_0 = 8,
}

export type MetadataValue =
  | { type: "u32"; value: number }
  | { type: "i32"; value: number }
  | { type: "f32"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "string[]"; value: readonly string[] }
  | { type: "f32[]"; value: readonly number[] }
  | { type: "i32[]"; value: readonly number[] };

export interface TensorSpec {
  name: string;
  /** ggml order: dims[0] is the innermost (row length). */
  dims: readonly number[];
  type: TensorType;
  /** Produces the tensor's raw bytes, already encoded in `type`. */
  data: () => Uint8Array;
}

const ALIGNMENT = 32;

/** Growable little-endian byte buffer for the header. */
class ByteSink {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  u32(v: number): void { this.reserve(4); this.buf.writeUInt32LE(v, this.length); this.length += 4; }
  i32(v: number): void { this.reserve(4); this.buf.writeInt32LE(v, this.length); this.length += 4; }
  u64(v: number): void { this.reserve(8); this.buf.writeBigUInt64LE(BigInt(v), this.length); this.length += 8; }
  f32(v: number): void { this.reserve(4); this.buf.writeFloatLE(v, this.length); this.length += 4; }
  u8(v: number): void { this.reserve(1); this.buf.writeUInt8(v, this.length); this.length += 1; }
  str(s: string): void {
    const bytes = Buffer.from(s, "utf8");
    this.u64(bytes.length);
    this.reserve(bytes.length);
    bytes.copy(this.buf, this.length);
    this.length += bytes.length;
  }
  bytes(): Buffer { return this.buf.subarray(0, this.length); }
}

function writeArray<T>(sink: ByteSink, elementType: ValueType, values: readonly T[], write: (value: T) => void): void {
  sink.u32(ValueType.Array); sink.u32(elementType); sink.u64(values.length);
  for (const value of values) write(value);
}

function writeValue(sink: ByteSink, v: MetadataValue): void {
  switch (v.type) {
    case "u32": sink.u32(ValueType.Uint32); sink.u32(v.value); break;
    case "i32": sink.u32(ValueType.Int32); sink.i32(v.value); break;
    case "f32": sink.u32(ValueType.Float32); sink.f32(v.value); break;
    case "bool": sink.u32(ValueType.Bool); sink.u8(v.value ? 1 : 0); break;
    case "string": sink.u32(ValueType.String); sink.str(v.value); break;
    case "string[]": writeArray(sink, ValueType.String, v.value, (s) => sink.str(s)); break;
    case "f32[]": writeArray(sink, ValueType.Float32, v.value, (x) => sink.f32(x)); break;
    case "i32[]": writeArray(sink, ValueType.Int32, v.value, (x) => sink.i32(x)); break;
  }
}

/** Bytes a tensor of this type and element count occupies. */
export function tensorByteSize(type: TensorType, elements: number): number {
  switch (type) {
    case TensorType.F32: return elements * 4;
    case TensorType.F16: return elements * 2;
    case TensorType.Q8_0: return (elements / 32) * 34;
  }
}

const alignUp = (n: number): number => Math.ceil(n / ALIGNMENT) * ALIGNMENT;

/**
 * Writes a GGUF v3 file. Tensor data is produced one tensor at a time so that
 * models of hundreds of megabytes never sit in memory whole.
 */
export async function writeGguf(
  path: string,
  metadata: ReadonlyMap<string, MetadataValue>,
  tensors: readonly TensorSpec[],
): Promise<void> {
  const header = new ByteSink();
  header.u32(0x46554747); // "GGUF"
  header.u32(3);
  header.u64(tensors.length);
  header.u64(metadata.size);
  for (const [key, value] of metadata) {
    header.str(key);
    writeValue(header, value);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    const elements = t.dims.reduce((a, b) => a * b, 1);
    if (t.type === TensorType.Q8_0 && (t.dims[0] ?? 0) % 32 !== 0) {
      throw new Error(`tensor ${t.name}: Q8_0 needs a row length divisible by 32`);
    }
    header.str(t.name);
    header.u32(t.dims.length);
    for (const d of t.dims) header.u64(d);
    header.u32(t.type);
    header.u64(offset);
    offsets.push(offset);
    offset = alignUp(offset + tensorByteSize(t.type, elements));
  }

  let file: FileHandle | undefined;
  try {
    file = await open(path, "w");
    const head = header.bytes();
    const dataStart = alignUp(head.length);
    await file.write(head, 0, head.length, 0);
    for (const [i, t] of tensors.entries()) {
      const bytes = t.data();
      await file.write(bytes, 0, bytes.length, dataStart + (offsets[i] ?? 0));
    }
    // Pad the file so the last tensor's aligned extent exists on disk.
    await file.truncate(dataStart + offset);
  } finally {
    await file?.close();
  }
}
