import type { Chart as ChartClass } from "chart.js";
import { h, table, type Json } from "./dom.js";

/** Chart.js, loaded by its own script tag from this origin (the CSP allows nothing else). */
declare const Chart: typeof ChartClass;

const ACCENT = "#8a5300";
const INK = "#1d1d1f";

export interface Breakdown {
  by_key: Array<{ key_id: string; name: string | null; prefix: string | null; requests: number; tokens: number }>;
  by_status: { success: number; client_error: number; client_closed: number; rate_limited: number; server_error: number };
  daily_tokens: Record<string, number>;
}

function daysOf(period: string): string[] {
  const [y, m] = period.split("-").map(Number) as [number, number];
  const count = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return Array.from({ length: count }, (_, i) => `${period}-${String(i + 1).padStart(2, "0")}`);
}

/** "1 request", "3 requests". */
const countOf = (n: number, unit: string): string => `${n.toLocaleString()} ${n === 1 ? unit.toLowerCase().replace(/s$/, "") : unit.toLowerCase()}`;

const dayLabel = (day: string): string => new Date(`${day}T00:00:00Z`).toLocaleDateString("en", { month: "short", day: "numeric", timeZone: "UTC" });

/**
 * One value per day of the month as a bar chart with dated axes and tooltips;
 * the canvas carries a text summary, and the numbers are also in a table for
 * anyone who cannot see the chart.
 */
export function dailyChart(id: string, title: string, unit: string, period: string, perDay: Record<string, number>): HTMLElement {
  const days = daysOf(period);
  const values = days.map((d) => perDay[d] ?? 0);
  const busy = days.filter((_, i) => values[i]! > 0);
  const summary =
    busy.length === 0
      ? `${title}: none in ${period}.`
      : `${title}: ${busy.map((d) => `${dayLabel(d)}: ${(perDay[d] ?? 0).toLocaleString()}`).join(", ")}.`;
  const canvas = h("canvas", { id, role: "img", "aria-label": summary }) as HTMLCanvasElement;
  const figure = h(
    "figure",
    { class: "chart" },
    h("figcaption", {}, title),
    h("div", { class: "chart-box" }, canvas),
    h(
      "details",
      {},
      h("summary", {}, `${title} as a table`),
      busy.length === 0
        ? h("p", {}, "No data this month.")
        : table(
            ["Day", unit],
            busy.map((d) => [dayLabel(d), (perDay[d] ?? 0).toLocaleString()]),
            false,
          ),
    ),
  );
  // Drawn once the canvas is in the page, so Chart.js can measure it.
  queueMicrotask(() => {
    new Chart(canvas, {
      type: "bar",
      data: { labels: days.map(dayLabel), datasets: [{ label: unit, data: values, backgroundColor: ACCENT }] },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { label: (item) => countOf(Number(item.raw), unit) } },
        },
        scales: {
          x: { title: { display: true, text: "Day (UTC)", color: INK }, ticks: { color: INK, maxRotation: 0, autoSkip: true, autoSkipPadding: 12 } },
          y: { beginAtZero: true, title: { display: true, text: unit, color: INK }, ticks: { color: INK, precision: 0 } },
        },
      },
    });
  });
  return figure;
}

/** Requests used against the monthly quota, as a labelled progress bar. */
export function quotaBar(id: string, used: number, limit: number): HTMLElement {
  // A plan that allows nothing (one the server no longer serves): no bar to fill, and a <progress> needs a maximum over 0.
  if (limit <= 0) return h("div", { class: "quota" }, h("p", { id }, `Monthly quota: none (${used.toLocaleString()} requests used)`));
  const share = Math.min(100, (used / limit) * 100);
  return h(
    "div",
    { class: "quota" },
    h(
      "label",
      { for: id },
      `Monthly quota: ${used.toLocaleString()} of ${limit.toLocaleString()} requests (${share < 1 && used > 0 ? "<1" : Math.round(share)}%)`,
    ),
    h("progress", { id, max: String(limit), value: String(Math.min(used, limit)) }),
  );
}

/** Where the requests went: per key and per outcome. */
export function breakdownTables(b: Breakdown, testIdPrefix: string): HTMLElement {
  const s = b.by_status;
  return h(
    "div",
    { class: "breakdowns" },
    h(
      "section",
      {},
      h("h3", {}, "By key"),
      b.by_key.length === 0
        ? h("p", { class: "empty" }, "No key has made a request this month.")
        : table(
            ["Key", "Requests", "Tokens"],
            b.by_key.map((k) => [`${k.name ?? "unnamed"} (${k.prefix ?? k.key_id})`, k.requests.toLocaleString(), k.tokens.toLocaleString()]),
            false,
          ),
    ),
    h(
      "section",
      { "data-testid": `${testIdPrefix}-by-status` },
      h("h3", {}, "By outcome"),
      table(
        ["Outcome", "Requests"],
        [
          ["2xx answered", s.success.toLocaleString()],
          ["499 client left (counted)", s.client_closed.toLocaleString()],
          ["4xx refused (e.g. not in plan)", s.client_error.toLocaleString()],
          ["429 over a limit", s.rate_limited.toLocaleString()],
          ["5xx server error (not counted)", s.server_error.toLocaleString()],
        ],
        false,
      ),
      h(
        "p",
        { class: "muted" },
        "Refused requests (over a limit, not in the plan) are counted here but never against the monthly quota; a request whose client left after it was admitted (499) is.",
      ),
    ),
  );
}

export const usageNumbers = (u: Json) => ({ used: Number(u.requests_used), limit: Number(u.requests_limit), tokens: Number(u.tokens_used) });
