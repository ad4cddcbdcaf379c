import { breakdownTables, dailyChart, quotaBar, usageNumbers, type Breakdown } from "./charts.js";
import {
  api,
  ApiFailure,
  confirmAction,
  copyable,
  doneButton,
  currentNavigation,
  errorText,
  field,
  form,
  h,
  keepOnLeave,
  keptDialog,
  keyLabel,
  newNavigation,
  say,
  show,
  showOnTop,
  state,
  table,
  when,
  type Json,
} from "./dom.js";

/** Revokes one key after an in-page confirmation naming it; a failure stays visible in the dialog. */
export function revokeButton(key: Json, path: string, after: () => Promise<HTMLElement | void>): HTMLElement {
  const label = keyLabel(key);
  return h(
    "button",
    {
      type: "button",
      class: "secondary",
      "aria-label": `Revoke key ${label}`,
      onclick: () =>
        confirmAction(`Revoke key ${label}?`, "Requests made with this key fail at once. This cannot be undone.", "Revoke key", async () => {
          const startedOn = currentNavigation();
          await api("POST", path);
          say(`Key ${label} revoked`);
          // Drawn again only where the person still is: the page they went to meanwhile is not replaced by this one.
          return currentNavigation() === startedOn ? after() : undefined;
        }),
    },
    "Revoke",
  );
}

/**
 * Who made a key, given the e-mail of its member where known: the member (or "you"), the account for its own keys
 * (created_by null: made by the operator, or kept when their member left), or a member since removed.
 */
export function creatorLabel(key: Json, email: string | undefined, you?: string): HTMLElement | string {
  if (key.created_by === null || key.created_by === undefined) return h("span", { class: "muted" }, "account");
  if (email === undefined) return h("span", { class: "muted" }, "removed member");
  return email === you ? "you" : email;
}

export function keyRows(
  keys: Json[],
  revokePath: (id: string) => string,
  after: () => Promise<HTMLElement | void>,
  creator: (key: Json) => HTMLElement | string,
) {
  return keys.map((k) => [
    typeof k.name === "string" ? k.name : h("span", { class: "muted" }, "unnamed"),
    String(k.mode),
    h("code", {}, String(k.prefix)),
    creator(k),
    when(k.created_at),
    when(k.last_used_at),
    k.revoked_at ? h("span", {}, "revoked ", when(k.revoked_at)) : revokeButton(k, revokePath(String(k.id)), after),
  ]);
}

/**
 * Draws the keys again with `redraw`, keeping the new keys' secrets on screen (all not dismissed): rotating a key (create
 * the new one, revoke the old, then copy) used to lose the new secret, which is never shown again, and so did making a
 * second key.
 */
async function keepingSecrets(redraw: () => Promise<void>): Promise<void> {
  const secrets = [...(document.getElementById("new-key")?.children ?? [])];
  await redraw();
  document.getElementById("new-key")?.replaceChildren(...secrets.filter((s) => !(s instanceof HTMLElement) || s.dataset.dismissed === undefined));
}

/**
 * A new key's secret above those of keys made before it and not dismissed yet (each stays until its Done), its Copy
 * button focused: on the page's top a screen reader said nothing of it.
 */
function showSecret(secret: HTMLElement): void {
  if (secret.dataset.dismissed !== undefined) return;
  showOnTop(document.getElementById("new-key"), secret);
  secret.querySelector("button")?.focus();
}

/**
 * A new key's secret, shown once: it stays in front of its person until they dismiss it (Done), in a dialog over the
 * next page if they leave this one before that (see keepOnLeave).
 */
function newKeySecret(key: string, name: unknown): HTMLElement {
  return keepOnLeave(
    h(
      "div",
      { class: "secret" },
      // Named when it has a name: the secrets of several keys made in a row can be on screen together.
      h("strong", {}, `Your new key${typeof name === "string" && name !== "" ? ` “${name}”` : ""} — shown once, copy it now:`),
      copyable("secret-value", key, "Copy the new key"),
      doneButton("Done with the new key"),
    ),
    "Your new key",
  );
}

/**
 * The form that makes a key (name, mode) by a POST to `createPath`, and the place its secret is shown once, above the
 * keys `redraw` draws anew: a member's Keys page, and an account's page for the operator (a key of the account's own).
 * `shown`: secrets of keys made before, not dismissed yet, that a page drawn anew keeps on screen.
 */
export function createKeyForm(createPath: string, redraw: () => Promise<void>, shown: readonly Element[] = []): HTMLElement[] {
  return [
    form(
      [
        field("Name", "name", "text", { required: false, placeholder: "e.g. production" }),
        h(
          "label",
          {},
          "Mode",
          h(
            "select",
            { name: "mode", "aria-label": "Mode" },
            h("option", { value: "live" }, "live"),
            h("option", { value: "test" }, "test (sandbox)"),
          ),
        ),
      ],
      "Create key",
      async (d) => {
        const startedOn = currentNavigation();
        // An empty name is no name (the admin API takes none rather than an empty one).
        const name = String(d.get("name") ?? "").trim();
        const created = await api("POST", createPath, { mode: d.get("mode"), ...(name === "" ? {} : { name }) });
        const secret = newKeySecret(String(created.key), created.name);
        // The person went to another page while the key was made: its secret, never shown again, goes in a dialog
        // there. It used to be drawn with the Keys page over that page, or lost when that page came last.
        if (currentNavigation() !== startedOn) return keptDialog("Your new key", secret);
        // On screen at once, and again in the list drawn anew (which a navigation may overtake: then the secret on
        // screen goes into a dialog over the next page, see keepWhatIsLeft).
        showSecret(secret);
        await keepingSecrets(redraw);
        showSecret(secret);
      },
    ),
    h("div", { id: "new-key" }, ...shown),
  ];
}

/** The member's Keys page drawn again, the new keys' secrets kept. */
const keysKeepingSecrets = (): Promise<void> => keepingSecrets(keysView);

export async function keysView(): Promise<void> {
  const keys = (await api<{ data: Json[] }>("GET", "/dashboard/api/keys")).data;
  const account = state.session?.account;
  show(
    h("h1", {}, "API keys"),
    h("p", { class: "muted" }, `Account ${account?.name ?? ""} · plan ${account?.plan ?? ""}`),
    ...createKeyForm("/dashboard/api/keys", keysView),
    keys.length === 0
      ? h("p", { class: "empty" }, "No keys yet. Create one above, then send it as “Authorization: Bearer …”.")
      : table(
          ["Name", "Mode", "Key", "Created by", "Created", "Last used", "Action"],
          keyRows(
            keys,
            (id) => `/dashboard/api/keys/${id}/revoke`,
            keysKeepingSecrets,
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
