import { breakdownTables, dailyChart, quotaBar, usageNumbers, type Breakdown } from "./charts.js";
import { createKeyForm, creatorLabel, keyRows, secretsOnPage } from "./keys.js";
import { api, ApiFailure, errorText, h, newNavigation, show, state, table, type Json } from "./dom.js";

export async function keysView(): Promise<void> {
  // New keys' secrets not dismissed yet stay on the page drawn anew (another key made or revoked).
  const secrets = secretsOnPage();
  const keys = (await api<{ data: Json[] }>("GET", "/dashboard/api/keys")).data;
  const account = state.session?.account;
  show(
    h("h1", {}, "API keys"),
    h("p", { class: "muted" }, `Account ${account?.name ?? ""} · plan ${account?.plan ?? ""}`),
    ...createKeyForm("/dashboard/api/keys", keysView, secrets()),
    keys.length === 0
      ? h("p", { class: "empty" }, "No keys yet. Create one above, then send it as “Authorization: Bearer …”.")
      : table(
          ["Name", "Mode", "Key", "Created by", "Created", "Last used", "Action"],
          keyRows(
            keys,
            (id) => `/dashboard/api/keys/${id}/revoke`,
            keysView,
            (k) => creatorLabel(k, typeof k.created_by_email === "string" ? k.created_by_email : undefined, state.session?.email),
          ),
        ),
  );
}

function monthsBack(count: number): string[] {
  return Array.from({ length: count }, (_, i) => {
    const d = new Date();
    d.setUTCDate(1);
    d.setUTCMonth(d.getUTCMonth() - i);
    return d.toISOString().slice(0, 7);
  });
}

/** Quota bar, daily requests and tokens, and the per-key and per-outcome breakdowns of one mode. */
export function usageSection(
  title: string,
  testId: string,
  period: string,
  usage: Json,
  daily: Record<string, number>,
  breakdown: Breakdown,
): HTMLElement {
  const { used, limit, tokens } = usageNumbers(usage);
  const bySpecialist = Object.entries((usage.by_specialist as Record<string, number> | undefined) ?? {});
  return h(
    "section",
    { "aria-labelledby": `${testId}-title`, class: "usage" },
    h("h2", { id: `${testId}-title` }, title),
    h(
      "div",
      { class: "cards" },
      h(
        "div",
        { class: "card" },
        h("div", { class: "muted" }, "Requests"),
        h("div", { class: "big", "data-testid": `${testId}-requests` }, `${used.toLocaleString()} / ${limit.toLocaleString()}`),
      ),
      h(
        "div",
        { class: "card" },
        h("div", { class: "muted" }, "Tokens"),
        h("div", { class: "big", "data-testid": `${testId}-tokens` }, tokens.toLocaleString()),
      ),
    ),
    quotaBar(`${testId}-quota`, used, limit),
    used === 0 && breakdown.by_key.length === 0
      ? h("p", { class: "empty" }, `No requests in ${period}. Make one with the example on the Plan page and it shows up here.`)
      : null,
    h(
      "div",
      { class: "charts" },
      dailyChart(`${testId}-requests-chart`, "Requests per day", "Requests", period, daily),
      dailyChart(`${testId}-tokens-chart`, "Tokens per day", "Tokens", period, breakdown.daily_tokens),
    ),
    breakdownTables(breakdown, testId),
    bySpecialist.length === 0
      ? null
      : h(
          "section",
          {},
          h("h3", {}, "By specialist"),
          table(
            ["Specialist", "Requests"],
            bySpecialist.map(([s, n]) => [s, n.toLocaleString()]),
            false,
          ),
        ),
  );
}

export async function usageView(period?: string): Promise<void> {
  const query = period ? `?period=${period}` : "";
  const [data, breakdown] = await Promise.all([
    api<{ period: string; since: string; live: Json; test: Json }>("GET", `/dashboard/api/usage${query}`),
    api<{ live: Breakdown; test: Breakdown }>("GET", `/dashboard/api/usage/breakdown${query}`),
  ]);
  const failure = h("p", { class: "error", role: "alert", id: "month-error" });
  const picker = h(
    "select",
    {
      id: "month",
      // A month that cannot be read says so beside the picker; it used to leave the last month's numbers under the
      // new month's name, the failure only in the console.
      onchange: (e) => {
        const chosen = (e.target as HTMLSelectElement).value;
        failure.textContent = "";
        // Each month is a page of its own: of two months picked in a row, the first one's late answer is not drawn.
        newNavigation();
        // The new month's page keeps the focus on its picker: it went to the page's top, so a keyboard user stepping
        // through months with the arrow keys moved one month, then nothing.
        usageView(chosen).then(
          () => document.getElementById("month")?.focus(),
          (error: unknown) => {
            if (error instanceof ApiFailure && error.status === 401) return; // sign-in says why (see api())
            failure.textContent = `The usage of ${chosen} could not be read: ${errorText(error)}`;
          },
        );
      },
    },
    // The last six months, none before the account existed (a new account was offered five empty ones).
    ...monthsBack(6)
      .filter((mo) => mo >= data.since || mo === data.period)
      .map((mo) => h("option", { value: mo, ...(mo === data.period ? { selected: true } : {}) }, mo)),
  );
  show(
    h("h1", {}, "Usage"),
    h("div", { class: "inline" }, h("label", { for: "month" }, "Month"), picker),
    failure,
    usageSection("Live", "live", data.period, data.live, data.live.daily as Record<string, number>, breakdown.live),
    usageSection("Sandbox (test keys)", "sandbox", data.period, data.test, data.test.daily as Record<string, number>, breakdown.test),
  );
}

/** An embeddings specialist is called through /v1/embeddings with its model name; the others through /v1/infer. */
function curlExample(origin: string, s: { id: string; kind: string }): string {
  const body = s.kind === "embeddings" ? `{"model":"alveare-${s.id}","input":"…"}` : `{"specialist":"${s.id}","prompt":"…"}`;
  const route = s.kind === "embeddings" ? "/v1/embeddings" : "/v1/infer";
  return `curl ${origin}${route} \\\n  -H "Authorization: Bearer $ALVEARE_API_KEY" \\\n  -H "Content-Type: application/json" \\\n  -d '${body}'`;
}

function sdkExample(origin: string, s: { id: string; kind: string }): string {
  const call =
    s.kind === "embeddings"
      ? `const { data } = await client.embeddings.create({\n  model: "alveare-${s.id}",\n  input: "…",\n});`
      : `const { result } = await client.infer({\n  specialist: "${s.id}",\n  prompt: "…",\n});`;
  // The SDK is not on npm: its package comes with the server, so the example says where to get it, and what works without it.
  return (
    `// npm install <the @alveare/sdk package your operator gives you>, or call ${origin}/v1\n` +
    `// with OpenAI's own SDK (npm install openai; baseURL "${origin}/v1", apiKey your key)\n` +
    `import { Alveare } from "@alveare/sdk";\n// The key comes from ALVEARE_API_KEY, or pass apiKey: "alv_live_…"\nconst client = new Alveare({\n  baseURL: "${origin}",\n});\n${call}`
  );
}

export async function planView(): Promise<void> {
  const plan = await api("GET", "/dashboard/api/plan");
  const origin = location.origin;
  const specialists = plan.specialists as Array<{ id: string; description: string; kind: "generation" | "embeddings" }>;
  show(
    h("h1", {}, `Plan: ${String(plan.name)}`),
    plan.served === false
      ? h(
          "p",
          { class: "error", role: "alert", "data-testid": "plan-not-served" },
          "This server no longer serves your account's plan, so your keys are refused. Ask the operator to move the account to one of its plans.",
        )
      : null,
    h(
      "p",
      {},
      `${String(plan.requests_per_window)} requests per ${String(plan.window_seconds)} s per key · ${Number(plan.requests_per_month).toLocaleString()} requests per month`,
    ),
    specialists.length === 0 ? h("p", { class: "empty" }, "This plan includes no specialists.") : null,
    ...specialists.flatMap((s) => [
      h("h2", {}, s.id),
      h("p", {}, s.description),
      h("pre", { tabindex: "0", "aria-label": `curl example for ${s.id}` }, curlExample(origin, s)),
      h("pre", { tabindex: "0", "aria-label": `TypeScript example for ${s.id}` }, sdkExample(origin, s)),
    ]),
  );
}
