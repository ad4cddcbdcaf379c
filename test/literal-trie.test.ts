import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { factorLiteralAlternatives, gbnfString } from "../src/engines/embedded/literal-trie.js";

const choice = (texts: readonly string[]): string => `root ::= ( ${texts.map(gbnfString).join(" | ")} )`;

describe("alternatives between literals, as a tree of shared beginnings", () => {
  it("write a shared beginning once, then split where the strings do", () => {
    const texts = Array.from({ length: 12 }, (_, i) => `"${"a".repeat(50)}${i}"`);
    assert.equal(
      factorLiteralAlternatives(choice(texts)),
      `root ::= "\\"${"a".repeat(50)}" ( "0\\"" | "1" ( "\\"" | "0\\"" | "1\\"" ) | "2\\"" | "3\\"" | "4\\"" | "5\\"" | "6\\"" | "7\\"" | "8\\"" | "9\\"" )`,
    );
  });

  it("read each value through rules of one literal (how node-llama-cpp writes an enum), and keep a string that ends inside another", () => {
    const names = Array.from({ length: 8 }, (_, i) => `val${i}`);
    const values = ["go", "gone", "goes", "good", "goal", "gold", "golf", "gong"];
    const gbnf = [`rule0 ::= ( ${names.join(" | ")} )`, ...values.map((v, i) => `val${i} ::= ${gbnfString(v)}`)].join("\n");
    const rewritten = factorLiteralAlternatives(gbnf).split("\n")[0];
    assert.equal(rewritten, 'rule0 ::= "go" ( "n" ( "e" | "g" ) | "es" | "od" | "al" | "l" ( "d" | "f" ) )?');
  });

  it("leave as written what the tree would not help or could not hold", () => {
    const few = choice(["a1", "a2", "a3"]);
    assert.equal(factorLiteralAlternatives(few), few, "fewer than 8");
    const mixed = `root ::= ( ${Array.from({ length: 8 }, (_, i) => gbnfString(`x${i}`)).join(" | ")} | [0-9] )`;
    assert.equal(factorLiteralAlternatives(mixed), mixed, "not literals alone");
    const unknownEscape = `root ::= ( ${Array.from({ length: 8 }, (_, i) => `"x${i}\\q"`).join(" | ")} )`;
    assert.equal(factorLiteralAlternatives(unknownEscape), unknownEscape);
  });

  it("write groups past 32 deep flat, and the rest of the tree still as a tree", () => {
    // 40 strings each a prefix of the next (40 groups deep) beside 20 sharing a long beginning: a client cannot undo the
    // tree for the whole choice by adding the deep ones.
    const deep = Array.from({ length: 40 }, (_, i) => "y".repeat(i + 1));
    const shared = Array.from({ length: 20 }, (_, i) => `${"a".repeat(50)}${String.fromCharCode(65 + i)}`);
    const rewritten = factorLiteralAlternatives(choice([...shared, ...deep]));
    assert.ok(rewritten.startsWith(`root ::= ( "${"a".repeat(50)}" ( "A" | "B" |`), rewritten.slice(0, 120));
    const flatTail = Array.from({ length: 8 }, (_, i) => `"${"y".repeat(i + 1)}"`).join(" | ");
    assert.ok(rewritten.includes(`( ${flatTail} )?`), "past 32 groups: the remaining strings flat");
  });

  it("keep escapes and characters outside the BMP whole", () => {
    const texts = ['é"1', 'é"2', "🐝a", "🐝b", "\\x", "\\y", "\u0007q", "\u0007r"];
    const rewritten = factorLiteralAlternatives(choice(texts));
    assert.equal(rewritten, 'root ::= ( "é\\"" ( "1" | "2" ) | "🐝" ( "a" | "b" ) | "\\\\" ( "x" | "y" ) | "\\u0007" ( "q" | "r" ) )');
  });
});
