export {};
/**
 * The Alveare dashboard: a small page-per-hash app on the DOM, no framework.
 * Every number it shows comes from the server's JSON API; it keeps nothing but
 * the session's CSRF token in memory (the session itself is an HttpOnly cookie).
 */

type Json = Record<string, unknown>;
interface SessionInfo { kind: "member" | "operator"; email?: string; account?: { id: string; name: string; plan: string }; csrf_token: string }

let session: SessionInfo | undefined;
const main = document.getElementById("main")!;
const nav = document.getElementById("nav")!;
const statusBox = document.getElementById("status")!;

type Child = Node | string | null | undefined | false;
function h(tag: string, attrs: Record<string, string | boolean | ((e: Event) => void)> = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false) el.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

class ApiFailure extends Error {
  constructor(readonly status: number, message: string) { super(message); }
}

async function api<T = Json>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined || method !== "GET") headers["content-type"] = "application/json";
  if (session && method !== "GET") headers["x-csrf-token"] = session.csrf_token;
  const response = await fetch(path, { method, headers, body: body === undefined ? (method === "GET" ? undefined : "{}") : JSON.stringify(body), credentials: "same-origin" });
  const json = (await response.json().catch(() => ({}))) as Json;
  if (!response.ok) throw new ApiFailure(response.status, ((json.error as Json | undefined)?.message as string | undefined) ?? `HTTP ${response.status}`);
  return json as T;
}

function show(...children: Child[]): void {
  main.replaceChildren(...children.filter((c): c is Node | string => c !== null && c !== undefined && c !== false));
  main.focus();
}

function say(message: string): void {
  statusBox.textContent = message;
  setTimeout(() => { if (statusBox.textContent === message) statusBox.textContent = ""; }, 4000);
}

/** A form whose errors appear next to it, in words. */
function form(fields: HTMLElement[], submitLabel: string, onSubmit: (data: FormData) => Promise<void>): HTMLElement {
  const error = h("p", { class: "error", role: "alert" });
  const el = h("form", {}, ...fields, h("button", { type: "submit" }, submitLabel), error) as HTMLFormElement;
  el.addEventListener("submit", (e) => {
    e.preventDefault();
    error.textContent = "";
    onSubmit(new FormData(el)).catch((err: unknown) => { error.textContent = err instanceof Error ? err.message : String(err); });
  });
  return el;
}

const field = (label: string, name: string, type = "text", extra: Record<string, string | boolean> = {}) =>
  h("label", {}, label, h("input", { name, type, required: true, ...extra }));

function renderNav(): void {
  const current = location.hash.split("=")[0] || "#keys";
  const link = (hash: string, text: string) => h("a", { href: hash, ...(current === hash ? { "aria-current": "page" } : {}) }, text);
  if (session === undefined) { nav.replaceChildren(); return; }
  const links = session.kind === "operator" ? [link("#admin", "Accounts")] : [link("#keys", "Keys"), link("#usage", "Usage"), link("#plan", "Plan")];
  nav.replaceChildren(...links, h("button", { type: "button", onclick: () => void signOut() }, "Sign out"));
}

async function signOut(): Promise<void> {
  await api("POST", "/dashboard/api/logout");
  session = undefined;
  location.hash = "#login";
}

function loginView(): void {
  show(
    h("h1", {}, "Sign in"),
    form([field("Email", "email", "email", { autocomplete: "username" }), field("Password", "password", "password", { autocomplete: "current-password" })], "Sign in", async (d) => {
      await api("POST", "/dashboard/api/login", { email: d.get("email"), password: d.get("password") });
      await loadSession();
      location.hash = "#keys";
    }),
    h("h2", {}, "Operator"),
    form([field("Admin token", "token", "password", { autocomplete: "off" })], "Sign in as operator", async (d) => {
      await api("POST", "/dashboard/api/admin-login", { token: d.get("token") });
      await loadSession();
      location.hash = "#admin";
    }),
  );
}

function inviteView(token: string): void {
  show(
    h("h1", {}, "Set your password"),
    h("p", {}, "Choose a password of at least 12 characters to finish joining your team's account."),
    form([field("New password", "password", "password", { minlength: "12", autocomplete: "new-password" })], "Set password and sign in", async (d) => {
      await api("POST", "/dashboard/api/invitations/accept", { token, password: d.get("password") });
      history.replaceState(null, "", "#keys"); // the token leaves the address bar
      await loadSession();
      await route();
    }),
  );
}

const date = (s: unknown) => (typeof s === "string" ? new Date(s).toLocaleString() : "—");

async function keysView(): Promise<void> {
  const keys = (await api<{ data: Json[] }>("GET", "/dashboard/api/keys")).data;
  const secretBox = h("div", { id: "new-key" });
  const rows = keys.map((k) =>
    h("tr", {},
      h("td", {}, String(k.name ?? "—")), h("td", {}, String(k.mode)), h("td", {}, h("code", {}, String(k.prefix))),
      h("td", {}, date(k.created_at)), h("td", {}, date(k.last_used_at)),
      h("td", {}, k.revoked_at ? `revoked ${date(k.revoked_at)}` : h("button", {
        type: "button", class: "secondary", "aria-label": `Revoke key ${String(k.prefix)}`,
        onclick: () => {
          if (!confirm(`Revoke ${String(k.prefix)}? Requests with it will fail at once.`)) return;
          void api("POST", `/dashboard/api/keys/${String(k.id)}/revoke`).then(() => { say("Key revoked"); return keysView(); });
        },
      }, "Revoke"))));
  show(
    h("h1", {}, "API keys"),
    h("p", { class: "muted" }, `Account ${session?.account?.name ?? ""} · plan ${session?.account?.plan ?? ""}`),
    form([
      field("Name", "name", "text", { required: false, placeholder: "e.g. production" }),
      h("label", {}, "Mode", h("select", { name: "mode", "aria-label": "Mode" }, h("option", { value: "live" }, "live"), h("option", { value: "test" }, "test (sandbox)"))),
    ], "Create key", async (d) => {
      const created = await api("POST", "/dashboard/api/keys", { name: d.get("name"), mode: d.get("mode") });
      await keysView();
      const secret = String(created.key);
      document.getElementById("new-key")!.replaceChildren(h("div", { class: "secret" },
        h("strong", {}, "Your new key — shown once, copy it now:"), h("code", { id: "secret-value" }, secret),
        h("button", { type: "button", onclick: () => void navigator.clipboard.writeText(secret).then(() => say("Copied")) }, "Copy")));
    }),
    secretBox,
    keys.length === 0 ? h("p", {}, "No keys yet.") : h("div", { class: "wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ...["Name", "Mode", "Key", "Created", "Last used", ""].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, ...rows))),
  );
}

function chart(daily: Record<string, number>, period: string): SVGElement {
  const [y, m] = period.split("-").map(Number) as [number, number];
  const days = new Date(Date.UTC(y, m, 0)).getUTCDate();
  const counts = Array.from({ length: days }, (_, i) => daily[`${period}-${String(i + 1).padStart(2, "0")}`] ?? 0);
  const max = Math.max(1, ...counts);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", `0 0 ${days * 10} 100`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Requests per day: ${counts.map((c, i) => `day ${i + 1}: ${c}`).filter((_, i) => counts[i]! > 0).join(", ") || "none"}`);
  counts.forEach((c, i) => {
    const rect = document.createElementNS(ns, "rect");
    const height = (c / max) * 95;
    rect.setAttribute("x", String(i * 10 + 1)); rect.setAttribute("width", "8");
    rect.setAttribute("y", String(100 - height)); rect.setAttribute("height", String(height));
    svg.append(rect);
  });
  return svg;
}

async function usageView(period?: string): Promise<void> {
  const data = await api<{ period: string; live: Json; test: Json }>("GET", `/dashboard/api/usage${period ? `?period=${period}` : ""}`);
  const months = Array.from({ length: 6 }, (_, i) => { const d = new Date(); d.setUTCDate(1); d.setUTCMonth(d.getUTCMonth() - i); return d.toISOString().slice(0, 7); });
  const picker = h("select", { "aria-label": "Month", onchange: (e) => void usageView((e.target as HTMLSelectElement).value) },
    ...months.map((mo) => h("option", { value: mo, ...(mo === data.period ? { selected: true } : {}) }, mo)));
  const section = (title: string, u: Json) => {
    const by = u.by_specialist as Record<string, number>;
    return h("section", { "aria-label": title },
      h("h2", {}, title),
      h("div", { class: "cards" },
        h("div", { class: "card" }, h("div", { class: "muted" }, "Requests"), h("div", { class: "big", "data-testid": `${title}-requests` }, `${String(u.requests_used)} / ${Number(u.requests_limit).toLocaleString()}`)),
        h("div", { class: "card" }, h("div", { class: "muted" }, "Tokens"), h("div", { class: "big" }, Number(u.tokens_used).toLocaleString()))),
      chart(u.daily as Record<string, number>, data.period),
      Object.keys(by).length === 0 ? h("p", { class: "muted" }, "No requests this month.") :
        h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Specialist"), h("th", { scope: "col" }, "Requests"))),
          h("tbody", {}, ...Object.entries(by).map(([s, n]) => h("tr", {}, h("td", {}, s), h("td", {}, String(n)))))));
  };
  show(h("h1", {}, "Usage"), h("label", {}, "Month ", picker), section("live", data.live), section("sandbox", data.test));
}

async function planView(): Promise<void> {
  const plan = await api("GET", "/dashboard/api/plan");
  const origin = location.origin;
  const specialists = plan.specialists as Array<{ id: string; description: string }>;
  show(
    h("h1", {}, `Plan: ${String(plan.name)}`),
    h("p", {}, `${String(plan.requests_per_window)} requests per ${String(plan.window_seconds)} s per key · ${Number(plan.requests_per_month).toLocaleString()} requests per month`),
    ...specialists.flatMap((s) => [
      h("h2", {}, s.id), h("p", {}, s.description),
      h("pre", {}, `curl ${origin}/v1/infer -H "Authorization: Bearer $ALVEARE_API_KEY" \\\n  -H "Content-Type: application/json" -d '{"specialist":"${s.id}","prompt":"…"}'`),
      h("pre", {}, `import { Alveare } from "@alveare/sdk";\nconst client = new Alveare({ baseURL: "${origin}" });\nconst { result } = await client.infer({ specialist: "${s.id}", prompt: "…" });`),
    ]),
  );
}

async function adminView(): Promise<void> {
  const accounts = (await api<{ data: Json[] }>("GET", "/admin/api/accounts")).data;
  const usage = await Promise.all(accounts.map((a) => api("GET", `/admin/api/accounts/${String(a.id)}/usage`)));
  const invite = h("div", { id: "invite-link" });
  show(
    h("h1", {}, "Accounts"),
    form([field("Name", "name"), h("label", {}, "Plan", h("select", { name: "plan", "aria-label": "Plan" }, ...["solo", "starter", "professional", "scale"].map((p) => h("option", { value: p }, p))))], "Create account", async (d) => {
      await api("POST", "/admin/api/accounts", { name: d.get("name"), plan: d.get("plan") });
      say("Account created");
      await adminView();
    }),
    invite,
    h("div", { class: "wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ...["Account", "Plan", "Live requests this month", "Status", "Invite a member", ""].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, ...accounts.map((a, i) => h("tr", {},
        h("td", {}, String(a.name), h("br"), h("small", { class: "muted" }, String(a.id))),
        h("td", {}, h("select", { "aria-label": `Plan of ${String(a.name)}`, onchange: (e) => void api("PATCH", `/admin/api/accounts/${String(a.id)}`, { plan: (e.target as HTMLSelectElement).value }).then(() => say("Plan changed")) },
          ...["solo", "starter", "professional", "scale"].map((p) => h("option", { value: p, ...(p === a.plan ? { selected: true } : {}) }, p)))),
        h("td", { "data-testid": `usage-${String(a.name)}` }, `${String(usage[i]?.requests_used ?? 0)} / ${Number(usage[i]?.requests_limit ?? 0).toLocaleString()} · ${Number(usage[i]?.tokens_used ?? 0).toLocaleString()} tokens`),
        h("td", {}, String(a.status)),
        h("td", {}, form([field("Email", "email", "email")], "Invite", async (d) => {
          const created = await api("POST", `/admin/api/accounts/${String(a.id)}/invitations`, { email: d.get("email") });
          const url = `${location.origin}${String(created.invite_path)}`;
          document.getElementById("invite-link")!.replaceChildren(h("div", { class: "secret" }, h("strong", {}, `Invitation for ${String(created.email)}:`), h("code", { id: "invite-url" }, url)));
        })),
        h("td", {}, h("button", { type: "button", class: "secondary", onclick: () => {
          const next = a.status === "active" ? "suspended" : "active";
          if (next === "suspended" && !confirm(`Suspend ${String(a.name)}? Its keys stop working at once.`)) return;
          void api("PATCH", `/admin/api/accounts/${String(a.id)}`, { status: next }).then(() => adminView());
        } }, a.status === "active" ? "Suspend" : "Reactivate"))))))),
  );
}

async function loadSession(): Promise<void> {
  try {
    session = await api<SessionInfo>("GET", "/dashboard/api/session");
  } catch {
    session = undefined;
  }
}

async function route(): Promise<void> {
  const hash = location.hash || "#keys";
  renderNav();
  try {
    if (hash.startsWith("#invite=")) return inviteView(hash.slice("#invite=".length));
    if (session === undefined) return loginView();
    if (session.kind === "operator") return await adminView();
    if (hash === "#usage") return await usageView();
    if (hash === "#plan") return await planView();
    return await keysView();
  } catch (error) {
    if (error instanceof ApiFailure && error.status === 401) { session = undefined; return loginView(); }
    show(h("p", { class: "error", role: "alert" }, error instanceof Error ? error.message : String(error)));
  }
}

window.addEventListener("hashchange", () => void route());
void loadSession().then(route);
