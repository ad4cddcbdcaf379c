import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { Page } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

export const WIDTHS = [1280, 390] as const;

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: Array<{ target: unknown[]; failureSummary?: string }>;
}

/**
 * axe-core's serious and critical findings on the page as it is now. The script
 * is evaluated through the DevTools protocol, so the page's CSP (which forbids
 * inline script) stays in force for the page's own code.
 */
export async function accessibilityProblems(page: Page): Promise<string[]> {
  await page.evaluate(AXE_SOURCE);
  const violations = (await page.evaluate(
    "axe.run(document, { resultTypes: ['violations'], runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } }).then((r) => r.violations)",
  )) as AxeViolation[];
  return violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => JSON.stringify(n.target)).join(", ")}`);
}

/** Controls (and the document) that reach past the viewport's right or left edge. */
export async function layoutProblems(page: Page): Promise<string[]> {
  return (await page.evaluate(`(() => {
    const problems = [];
    const width = window.innerWidth;
    if (document.documentElement.scrollWidth > width) problems.push("horizontal scroll: document is " + document.documentElement.scrollWidth + " px wide in a " + width + " px viewport");
    for (const el of document.querySelectorAll("button, a, input, select, summary, progress, canvas, pre, table")) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      if (r.left < 0 || r.right > width + 0.5) problems.push("clipped " + el.tagName.toLowerCase() + " '" + (el.textContent || el.getAttribute("aria-label") || "").trim().slice(0, 40) + "' spans " + Math.round(r.left) + "-" + Math.round(r.right) + " px");
    }
    // A column header may wrap between its words, never inside one ("Request" over "s").
    for (const th of document.querySelectorAll("th")) {
      const node = th.firstChild;
      // A stacked table's header row is hidden off-screen (1 px wide) on narrow screens: not checked.
      const hidden = (th.closest("thead") ?? th).getBoundingClientRect().width <= 1;
      if (hidden || !node || node.nodeType !== Node.TEXT_NODE) continue;
      const text = node.textContent;
      for (const match of text.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        if (range.getClientRects().length > 1) problems.push("header '" + text.trim() + "' breaks inside '" + match[0] + "'");
      }
    }
    return problems;
  })()`)) as string[];
}

/**
 * Checks one page at each width: screenshots for people to look at, no
 * horizontal scroll or clipped control, and no serious accessibility finding.
 */
export async function auditPage(page: Page, name: string, artifacts: string): Promise<void> {
  const original = page.viewportSize();
  for (const width of WIDTHS) {
    await page.setViewportSize({ width, height: 900 });
    // Charts redraw at the new size on a later frame (Chart.js's ResizeObserver): wait for
    // every canvas to fit its box; if one never does, the layout check below says which.
    await page
      .waitForFunction(
        "[...document.querySelectorAll('canvas')].every((c) => c.getBoundingClientRect().width <= c.parentElement.getBoundingClientRect().width + 0.5)",
        undefined,
        { timeout: 5000 },
      )
      .catch(() => undefined);
    await page.screenshot({ path: `${artifacts}${name}-${width}.png`, fullPage: true });
    assert.deepEqual(await layoutProblems(page), [], `${name} at ${width} px`);
    assert.deepEqual(await accessibilityProblems(page), [], `${name} at ${width} px`);
  }
  if (original !== null) await page.setViewportSize(original);
}

/** Collects the page's Content-Security-Policy violations (the dashboard must work under its own CSP). */
export function watchCsp(page: Page): string[] {
  const violations: string[] = [];
  page.on("console", (message) => {
    if (/Content Security Policy/i.test(message.text())) violations.push(message.text());
  });
  return violations;
}

/**
 * Contrast of what is not text (axe checks text only): a button's fill, an
 * input's border and the keyboard focus ring against the background behind
 * them, each at least 3:1 (WCAG 1.4.11). The page must show an input and a button.
 */
export async function nonTextContrast(page: Page): Promise<Record<string, number>> {
  return (await page.evaluate(`(() => {
    const rgb = (s) => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
    const lum = (c) => { const [r, g, b] = c.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
    const ratio = (a, b) => { const [x, y] = [lum(rgb(a)), lum(rgb(b))].sort((p, q) => q - p); return Math.round(((x + 0.05) / (y + 0.05)) * 100) / 100; };
    const page = getComputedStyle(document.body).backgroundColor;
    const input = document.querySelector("main input:not([hidden])");
    const button = document.querySelector("main button");
    input.focus();
    const focused = getComputedStyle(input);
    const result = {
      "button fill": ratio(getComputedStyle(button).backgroundColor, page),
      "focus ring": ratio(focused.outlineColor, page),
    };
    input.blur();
    result["input border"] = ratio(getComputedStyle(input).borderTopColor, getComputedStyle(input).backgroundColor);
    result["input border on page"] = ratio(getComputedStyle(input).borderTopColor, page);
    return result;
  })()`)) as Record<string, number>;
}
