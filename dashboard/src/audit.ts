import { api, ApiFailure, errorText, form, h, show, table, when, type Json } from "./dom.js";

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
      page.next_cursor === null ? "" : older(page.next_cursor, all),
    );
  };
  // Its failure is said beside it: the button did nothing, the error only in the console.
  const older = (cursor: number, shown: Json[]): HTMLElement => {
    const failure = h("p", { class: "error", role: "alert" });
    const onclick = (): void => {
      failure.textContent = "";
      load(cursor, shown).catch((error: unknown) => {
        if (error instanceof ApiFailure && error.status === 401) return; // sign-in says why (see api())
        failure.textContent = `Older records could not be read: ${errorText(error)}`;
      });
    };
    return h("div", {}, h("button", { type: "button", class: "secondary", onclick }, "Show older records"), failure);
  };
  await load(null, []).catch((error: unknown) => {
    if (error instanceof ApiFailure && error.status === 401) throw error; // sign-in says why (see api())
    // Said here, under the filters that can fix it (an impossible date, say): it replaced the whole page, filters and all.
    body.replaceChildren(h("p", { class: "error", role: "alert" }, `No records could be read: ${errorText(error)}`));
  });
  return section;
}

/** The filters that are set, as a query. */
function filterQuery(filters: Filters): URLSearchParams {
  const query = new URLSearchParams();
  for (const name of FILTERS) if (filters[name]) query.set(name, filters[name]);
  return query;
}

/** The address of the operator's audit page with these filters: `#audit?action=key.revoked&since=2026-11-01`. */
export function auditHash(filters: Filters): string {
  const text = filterQuery(filters).toString();
  return text === "" ? "#audit" : `#audit?${text}`;
}

/** The day after a "YYYY-MM-DD" day; anything else unchanged, for the server to accept or refuse by name. */
function dayAfter(day: string): string {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) return day;
  const next = new Date(`${day}T00:00:00Z`);
  // An impossible day (2026-02-30) is the server's to refuse, not this page's to roll over.
  if (Number.isNaN(next.getTime()) || next.toISOString().slice(0, 10) !== day) return day;
  next.setUTCDate(next.getUTCDate() + 1);
  return next.toISOString().slice(0, 10);
}

/** The filters an audit page's address names; anything else in it is ignored. */
export function auditFilters(hash: string): Filters {
  const query = new URLSearchParams(hash.slice("#audit".length).replace(/^\?/, ""));
  const filters: Filters = {};
  for (const name of FILTERS) {
    const value = query.get(name)?.trim();
    if (value) filters[name] = value;
  }
  return filters;
}

/**
 * The operator's audit page. Its filters live in the page's address, so a filtered view survives a reload, Back
 * and Forward, and can be bookmarked or sent to someone: they used to be lost on any of those.
 */
export async function auditView(filters: Filters = {}): Promise<void> {
  const query = filterQuery(filters);
  // The form's "Until" is a day, included, as a person picking one means it; the API's `until` is exclusive, so it
  // gets the next day. Before, Since and Until on the same day showed nothing. Anything else goes as it is.
  if (filters.until !== undefined) query.set("until", dayAfter(filters.until));
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
        input("Until (included)", "until", "date"),
      ],
      "Filter",
      async (d) => {
        const next: Filters = {};
        for (const name of FILTERS) {
          const value = String(d.get(name) ?? "").trim();
          if (value !== "") next[name] = value;
        }
        // Said beside the form: it only said that no records match.
        if (next.since !== undefined && next.until !== undefined && next.since > next.until) {
          throw new Error(`"Since" (${next.since}) is after "Until" (${next.until}): no record can be in between.`);
        }
        const hash = auditHash(next);
        // The same filters again fire no hashchange: drawn here, as the records may have changed since.
        if (location.hash === hash) await auditView(next);
        else location.hash = hash;
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
