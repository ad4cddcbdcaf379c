import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

/**
 * The layers below HTTP (the inference use case, accounts, admission, engines,
 * storage, specialists, metering)
 * must not depend on Fastify or on the HTTP layer, not even through another
 * module: each can then be used by the CLI, a worker or a test without a server.
 */
const ROOT = resolve(fileURLToPath(new URL("../../", import.meta.url)));
const LOWER_LAYERS = ["src/inference", "src/accounts", "src/gate", "src/engines", "src/store", "src/specialists", "src/metering"];

const isFramework = (specifier: string): boolean => /^(fastify|@fastify\/)/.test(specifier);

/** Every module a source file names in an import, an export-from or a dynamic import. */
export function importedSpecifiers(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const found: string[] = [];
  for (const pattern of [
    /\b(?:import|export)\s[^;]*?\bfrom\s*["']([^"']+)["']/g,
    /\bimport\s*["']([^"']+)["']/g,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
  ]) {
    for (const match of code.matchAll(pattern)) found.push(match[1]!);
  }
  return found;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts") ? [path] : [];
  });
}

/** A relative specifier as the .ts file it names (NodeNext imports say .js); undefined for packages. */
function resolveLocal(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith(".")) return undefined;
  const path = resolve(dirname(from), specifier).replace(/\.js$/, ".ts");
  return existsSync(path) ? path : undefined;
}

const imports = new Map<string, string[]>();
function importsOf(file: string): string[] {
  let list = imports.get(file);
  if (list === undefined) {
    list = importedSpecifiers(readFileSync(file, "utf8"));
    imports.set(file, list);
  }
  return list;
}

const inDir = (file: string, dir: string): boolean => !relative(join(ROOT, dir), file).startsWith("..");
/** The HTTP layer: src/server and every module that uses Fastify itself (route files, web helpers). */
const isHttpLayer = (file: string): boolean => inDir(file, "src/server") || importsOf(file).some(isFramework);

/** The first path from a file to Fastify or the HTTP layer, as `a.ts -> b.ts -> fastify`; undefined when there is none. */
function pathToHttp(start: string): string | undefined {
  const seen = new Set<string>([start]);
  const queue: Array<{ file: string; path: string[] }> = [{ file: start, path: [relative(ROOT, start)] }];
  while (queue.length > 0) {
    const { file, path } = queue.shift()!;
    for (const specifier of importsOf(file)) {
      if (isFramework(specifier)) return [...path, specifier].join(" -> ");
      const next = resolveLocal(file, specifier);
      if (next === undefined || seen.has(next)) continue;
      seen.add(next);
      const nextPath = [...path, relative(ROOT, next)];
      if (isHttpLayer(next)) return nextPath.join(" -> ");
      queue.push({ file: next, path: nextPath });
    }
  }
  return undefined;
}

describe("layering", () => {
  it("reads imports, export-froms and dynamic imports, over several lines", () => {
    const source = [
      'import type {\n  A,\n  B,\n} from "./a.js";',
      'export { c } from "../c.js";',
      'import "./side-effect.js";',
      'const d = await import("./d.js");',
      '// import x from "./commented.js";',
      '/* import y from "./blocked.js"; */',
    ].join("\n");
    assert.deepEqual(importedSpecifiers(source).sort(), ["../c.js", "./a.js", "./d.js", "./side-effect.js"]);
  });

  it("recognises the HTTP layer it guards against", () => {
    assert.ok(isHttpLayer(join(ROOT, "src/server/routes/infer.ts")));
    assert.ok(isHttpLayer(join(ROOT, "src/admin/admin-api.ts")));
    assert.equal(pathToHttp(join(ROOT, "src/server/server.ts"))?.endsWith("fastify"), true);
  });

  for (const layer of LOWER_LAYERS) {
    it(`${layer} never reaches Fastify or the HTTP layer`, () => {
      const files = sourceFiles(join(ROOT, layer));
      assert.ok(files.length > 0, `no sources under ${layer}`);
      const violations = files.map(pathToHttp).filter((p) => p !== undefined);
      assert.deepEqual(violations, []);
    });
  }

  it("src/gate (admission) never imports account management (src/accounts)", () => {
    const gateFiles = sourceFiles(join(ROOT, "src/gate"));
    const intoAccounts = gateFiles.flatMap((file) =>
      importsOf(file)
        .map((specifier) => resolveLocal(file, specifier))
        .filter((target) => target !== undefined && inDir(target, "src/accounts"))
        .map((target) => `${relative(ROOT, file)} -> ${relative(ROOT, target!)}`),
    );
    assert.deepEqual(intoAccounts, []);
  });
});
