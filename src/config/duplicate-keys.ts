import { formatPath } from "../schema/locate.js";

type PathSegment = string | number;

type Frame =
  | { kind: "object"; path: PathSegment[]; keys: Set<string>; key?: string; expectKey: boolean }
  | { kind: "array"; path: PathSegment[]; index: number };

/** Where a value that starts now sits: under its object's last key, or at its list's index. */
const valuePath = (parent: Frame | undefined): PathSegment[] =>
  parent === undefined ? [] : parent.kind === "object" ? [...parent.path, parent.key ?? ""] : [...parent.path, parent.index];

/**
 * The dotted path (`specialists.tickets`) of the first key an object of this JSON text holds twice, or
 * undefined. JSON.parse keeps the last silently, so a specialist or plan written twice (a copied block
 * left behind) would serve only one of them, with no word said. `text` must already be valid JSON.
 */
export function duplicateKey(text: string): string | undefined {
  const stack: Frame[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    const top = stack.at(-1);
    if (c === "{") stack.push({ kind: "object", path: valuePath(top), keys: new Set(), expectKey: true });
    else if (c === "[") stack.push({ kind: "array", path: valuePath(top), index: 0 });
    else if (c === "}" || c === "]") stack.pop();
    else if (c === ",") {
      if (top?.kind === "object") top.expectKey = true;
      else if (top?.kind === "array") top.index++;
    } else if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      if (top?.kind === "object" && top.expectKey) {
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        if (top.keys.has(key)) return formatPath([...top.path, key]);
        top.keys.add(key);
        top.key = key;
        top.expectKey = false;
      }
      i = end;
    }
  }
  return undefined;
}
