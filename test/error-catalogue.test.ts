import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";

const ROOT = new URL("../../", import.meta.url).pathname;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(join(dir, entry.name)) : entry.name.endsWith(".ts") ? [join(dir, entry.name)] : [],
  );
}

describe("the README's error catalogue", () => {
  it("lists every code the server builds an error with", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const codes = new Set<string>();
    for (const file of sourceFiles(join(ROOT, "src"))) {
      const text = readFileSync(file, "utf8");
      for (const m of text.matchAll(/ApiError\(\s*\d{3},\s*"\w+",\s*"(\w+)"/g)) codes.add(m[1]!);
      for (const m of text.matchAll(/\binvalid\(\s*"(\w+)"/g)) codes.add(m[1]!);
    }
    assert.ok(codes.size > 20, `the scan found the codes (${codes.size})`);
    // invalid_credentials (a member's wrong password) was missing.
    assert.deepEqual(
      [...codes].filter((code) => !readme.includes(`\`${code}\``)),
      [],
    );
  });
});
