import { createWriteStream } from "node:fs";
import { open, rename, rm, stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { makeDirectorySync } from "../make-directory.js";

/** The model could not be had; the message is one line an operator can act on. */
export class ModelUnavailableError extends Error {
  override name = "ModelUnavailableError";
}

interface DownloadProgress {
  downloaded: number;
  total: number | undefined;
}

/** `hf:owner/repo/file.gguf` (optionally `hf:owner/repo:branch/file`) to its download URL. */
function modelUrl(uri: string): string {
  if (uri.startsWith("http://") || uri.startsWith("https://")) return uri;
  const m = /^hf:([^/]+)\/([^/:]+)(?::([^/]+))?\/(.+\.gguf)$/.exec(uri);
  if (m === null) throw new ModelUnavailableError(`'${uri}' is not a model URI; expected hf:owner/repo/file.gguf or an http(s) URL`);
  const [, owner, repo, branch, file] = m;
  const endpoint = (process.env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, "");
  return `${endpoint}/${owner}/${repo}/resolve/${branch ?? "main"}/${file}`;
}

export const isRemoteModel = (location: string): boolean =>
  location.startsWith("hf:") || location.startsWith("http://") || location.startsWith("https://");

/** Whether the file starts with GGUF's magic bytes. */
export async function isGgufFile(path: string): Promise<boolean> {
  const file = await open(path, "r");
  try {
    const { buffer, bytesRead } = await file.read(Buffer.alloc(4), 0, 4, 0);
    return bytesRead === 4 && buffer.toString("latin1") === "GGUF";
  } finally {
    await file.close();
  }
}

/** A downloaded file must at least be a GGUF; a captive portal's HTML page is not a model. */
async function verifyGguf(path: string): Promise<void> {
  if (!(await isGgufFile(path))) throw new ModelUnavailableError(`${path} is not a GGUF file`);
}

/** Said by `models pull` and by `serve` alike, so it names what works in both: fix the download, or bring the file. */
const offlineHint = (uri: string, why: string): string =>
  `cannot download the model ${uri} (${why}): check the address and that this machine can reach it; ` +
  "or copy the .gguf file here yourself and start the server with --model /path/to/model.gguf (or ALVEARE_MODEL=/path/to/model.gguf)";

/**
 * For a missing relative path that reads as a Hugging Face repository (`owner/repo`, as the hub writes it), the hf: URI
 * meant. A path to a .gguf file (`models/qwen.gguf`, or a file in a repository) may as well be a local one: no hint.
 */
function hubHint(location: string): string {
  if (!/^[\w-][\w.-]*\/[\w.-]+$/.test(location) || location.endsWith(".gguf")) return "";
  return ` (did you mean hf:${location}/<file>.gguf, a file in that repository?)`;
}

/**
 * Returns a local path for a model location. A local path must exist; a URI is
 * downloaded once into `<dataDir>/models` (to a temporary name, renamed when
 * complete and verified) and found there on later starts.
 */
export async function resolveModel(location: string, dataDir: string, onProgress?: (p: DownloadProgress) => void): Promise<string> {
  if (!isRemoteModel(location)) {
    const path = resolve(location);
    const info = await stat(path).catch(() => undefined);
    if (!info?.isFile())
      throw new ModelUnavailableError(
        `model file not found: ${path}; give an existing .gguf file, an hf:owner/repo/file.gguf URI or an http(s) URL${hubHint(location)}`,
      );
    await verifyGguf(path);
    return path;
  }
  const url = modelUrl(location);
  const dir = join(dataDir, "models");
  const target = join(dir, basename(new URL(url).pathname));
  if (
    await stat(target).then(
      (s) => s.isFile(),
      () => false,
    )
  )
    return target;
  makeDirectorySync(dir);
  let response: Response;
  try {
    response = await fetch(url, { redirect: "follow" });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    throw new ModelUnavailableError(offlineHint(location, cause?.code ?? cause?.message ?? (error as Error).message));
  }
  if (!response.ok || response.body === null) {
    throw new ModelUnavailableError(offlineHint(location, `HTTP ${response.status}`));
  }
  const total = Number(response.headers.get("content-length")) || undefined;
  const partial = `${target}.partial`;
  let downloaded = 0;
  const body = Readable.fromWeb(response.body as import("node:stream/web").ReadableStream<Uint8Array>);
  body.on("data", (chunk: Buffer) => {
    downloaded += chunk.length;
    onProgress?.({ downloaded, total });
  });
  try {
    await pipeline(body, createWriteStream(partial));
    if (total !== undefined && downloaded !== total) throw new ModelUnavailableError(offlineHint(location, "the download was cut short"));
    await verifyGguf(partial);
    await rename(partial, target);
  } catch (error) {
    await rm(partial, { force: true });
    if (error instanceof ModelUnavailableError) throw error;
    throw new ModelUnavailableError(offlineHint(location, (error as Error).message));
  }
  return target;
}

/** A one-line progress bar for a terminal (or a plain percentage line per step elsewhere). */
export function progressBar(): (p: DownloadProgress) => void {
  const stream = process.stderr;
  let lastPercent = -1;
  return ({ downloaded, total }) => {
    const mb = (n: number): string => (n / 1024 / 1024).toFixed(1);
    if (total === undefined) {
      if (stream.isTTY) stream.write(`\rdownloading ${mb(downloaded)} MB`);
      return;
    }
    const percent = Math.floor((downloaded / total) * 100);
    if (percent === lastPercent) return;
    lastPercent = percent;
    const width = 30;
    const filled = Math.round((percent / 100) * width);
    const line = `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${percent}% ${mb(downloaded)}/${mb(total)} MB`;
    if (stream.isTTY) stream.write(`\r${line}${percent === 100 ? "\n" : ""}`);
    else if (percent % 10 === 0) stream.write(`${line}\n`);
  };
}
