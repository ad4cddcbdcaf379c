import { api, form, h, show, table, when, type Json } from "./dom.js";

const ACTIONS = [
  "account.created",
  "account.plan_changed",
  "account.suspended",
  "account.reactivated",
  "key.created",
  "key.revoked",
  "member.invited",
  "member.joined",
  "member.removed",
  "sign_in.succeeded",
  "sign_in.failed",
  "operator.signed_in",
  "admin_token.used",
  "admin_token.failed",
];
const FILTERS = ["account", "action", "actor", "since", "until"] as const;
type Filters = Partial<Record<(typeof FILTERS)[number], string>>;

interface AuditList {
  data: Json[];
  next_cursor: number | null;
}

const detailText = (detail: unknown): string =>
  detail !== null && typeof detail === "object"
    ? Object.entries(detail as Record<string, unknown>)
        .map(([k, v]) => `${k}: ${String(v)}`)
        .join(", ")
    : "";

/** The target, and for the operator a link to the account it belongs to (unless the target is that account). */
function target(r: Json, linkAccount: boolean): HTMLElement {
  const cell = h("span", {}, String(r.target ?? "-"));
  if (linkAccount && typeof r.account_id === "string") {
    const link = h(
      "a",
      { href: `#account=${r.account_id}`, "aria-label": `Account ${r.account_id}` },
      r.target === `account:${r.account_id}` ? String(r.target) : `account ${r.account_id}`,
    );
    if (r.target === `account:${r.account_id}`) cell.replaceChildren(link);
    else cell.append(h("br"), h("small", {}, link));
  }
  return cell;
}

function rows(records: Json[], linkAccount: boolean) {
  return records.map((r) => [
    when(r.at),
    String(r.actor),
    h("code", {}, String(r.action)),
    target(r, linkAccount),
    detailText(r.detail),
    String(r.source ?? "-"),
    String(r.count),
  ]);
}

/**
 * Audit records, newest first, a page at a time: the operator's across all
 * accounts (with filters), or a member's for their own account.
 */
async function recordsSection(base: string, query: URLSearchParams, withAccount: boolean): Promise<HTMLElement> {
  const headers = ["When", "Who", "What", "Target", "Details", "From", "Count"];
  const section = h("section", { "aria-labelledby": "audit-records-title" }, h("h2", { id: "audit-records-title" }, "Records"));
  const body = h("div", { id: "audit-records" });
  section.append(body);
  const load = async (cursor: number | null, shown: Json[]): Promise<void> => {
    const params = new URLSearchParams(query);
    if (cursor !== null) params.set("cursor", String(cursor));
    const page = await api<AuditList>("GET", `${base}?${params.toString()}`);
    const all = [...shown, ...page.data];
    body.replaceChildren(
      all.length === 0 ? h("p", { class: "empty" }, "No records match.") : h("div", { class: "audit-table" }, table(headers, rows(all, withAccount))),
      page.next_cursor === null
        ? ""
        : h("button", { type: "button", class: "secondary", onclick: () => void load(page.next_cursor, all) }, "Show older records"),
    );
  };
  await load(null, []);
  return section;
}

export async function auditView(filters: Filters = {}): Promise<void> {
  const query = new URLSearchParams();
  for (const name of FILTERS) if (filters[name]) query.set(name, filters[name]);
  const input = (label: string, name: (typeof FILTERS)[number], type = "text", hint = "") =>
    h("label", {}, label, h("input", { name, type, value: filters[name] ?? "", ...(hint ? { placeholder: hint } : {}) }));
  show(
    h("h1", {}, "Audit log"),
    h(
      "p",
      { class: "muted" },
      "Every change to accounts, keys and members, every sign-in and every use of the admin token. Failed attempts that name no member are counted per address and minute.",
    ),
    form(
      [
        input("Account", "account", "text", "acct_…"),
        h(
          "label",
          {},
          "Action",
          h(
            "select",
            { name: "action" },
            h("option", { value: "" }, "any"),
            ...ACTIONS.map((a) => h("option", { value: a, ...(a === filters.action ? { selected: true } : {}) }, a)),
          ),
        ),
        input("Actor", "actor", "text", "operator, cli, member:…"),
        input("Since", "since", "date"),
        input("Until", "until", "date"),
      ],
      "Filter",
      async (d) => {
        const next: Filters = {};
        for (const name of FILTERS) {
          const value = String(d.get(name) ?? "").trim();
          if (value !== "") next[name] = value;
        }
        await auditView(next);
      },
      "filters",
    ),
    await recordsSection("/admin/api/audit", query, true),
  );
}

export async function activityView(): Promise<void> {
  show(
    h("h1", {}, "Activity"),
    h("p", { class: "muted" }, "Changes to this account, its keys and members, and its members' sign-ins."),
    await recordsSection("/dashboard/api/audit", new URLSearchParams(), false),
  );
}
