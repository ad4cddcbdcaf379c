import { breakdownTables, dailyChart, quotaBar, usageNumbers, type Breakdown } from "./charts.js";
import {
  api,
  confirmAction,
  copyable,
  currentNavigation,
  doneButton,
  field,
  form,
  h,
  keepOnLeave,
  keptDialog,
  say,
  show,
  showOnTop,
  table,
  when,
  type Json,
} from "./dom.js";
import { createKeyForm, creatorLabel, keyRows, secretsOnPage } from "./keys.js";

/** The plans the server serves, as its config file defines them (custom ones included), by name. */
const planNames = async (): Promise<string[]> => (await api<{ data: Json[] }>("GET", "/admin/api/plans")).data.map((p) => String(p.name));
const accountLink = (a: Json) => h("a", { href: `#account=${String(a.id)}` }, String(a.name));

export async function accountsView(): Promise<void> {
  const [accounts, plans] = await Promise.all([(await api<{ data: Json[] }>("GET", "/admin/api/accounts")).data, planNames()]);
  // One account whose usage cannot be read (its plan gone from the config, say) leaves its cell empty, not the page.
  const usage = await Promise.all(
    accounts.map((a) => api("GET", `/admin/api/accounts/${encodeURIComponent(String(a.id))}/usage`).catch(() => undefined)),
  );
  show(
    h("h1", {}, "Accounts"),
    form(
      [
        field("Name", "name"),
        h("label", {}, "Plan", h("select", { name: "plan", "aria-label": "Plan" }, ...plans.map((p) => h("option", { value: p }, p)))),
      ],
      "Create account",
      async (d) => {
        const startedOn = currentNavigation();
        const created = await api("POST", "/admin/api/accounts", { name: d.get("name"), plan: d.get("plan") });
        say(`Account ${String(created.name)} created`);
        // Drawn again only where the operator still is: Accounts was drawn over the page they went to meanwhile.
        if (currentNavigation() === startedOn) await accountsView();
      },
    ),
    accounts.length === 0
      ? h("p", { class: "empty" }, "No accounts yet. Create one above, then open it to make a key or invite its first member.")
      : table(
          ["Account", "Plan", "Status", "Live requests this month", "Created"],
          accounts.map((a, i) => {
            const read = usage[i];
            const u = usageNumbers(read ?? {});
            return [
              h("span", {}, accountLink(a), h("br"), h("small", { class: "muted" }, String(a.id))),
              String(a.plan),
              h("span", { class: `badge ${String(a.status)}` }, String(a.status)),
              h(
                "span",
                { "data-testid": `usage-${String(a.name)}` },
                read === undefined ? "—" : `${u.used.toLocaleString()} / ${u.limit.toLocaleString()} · ${u.tokens.toLocaleString()} tokens`,
              ),
              when(a.created_at),
            ];
          }),
        ),
  );
}

/**
 * A new invitation's link on the account's page, above the links not dismissed yet: the link of an invitation sent to
 * another e-mail before it stays (replacing it lost that link), one to the same e-mail goes (the new one replaced it).
 */
function showInvitation(box: HTMLElement, email: string): void {
  const list = document.getElementById("invite-result");
  for (const older of list?.querySelectorAll<HTMLElement>(".secret") ?? []) if (older.dataset.email === email) older.remove();
  box.dataset.email = email;
  showOnTop(list, box);
}

/**
 * A new invitation's link, shown once: as a new key's secret, it stays in front of the operator until they dismiss it
 * (Done), in a dialog over the next page if they leave this one first. Leaving the account's page used to lose it.
 */
function invitationBox(info: Json, url: string): HTMLElement {
  return keepOnLeave(
    h(
      "div",
      { class: "secret", id: "invitation" },
      h("strong", {}, `Invitation for ${String(info.email)} to join ${String(info.account_name)}`),
      copyable("invite-url", url, "Copy the invitation link"),
      h(
        "p",
        { class: "muted" },
        "Send this link to them; it works once and expires ",
        when(info.expires_at),
        ` (${new Date(String(info.expires_at)).toLocaleString()}).`,
      ),
      doneButton("Done with the invitation link"),
    ),
    "Invitation link",
  );
}

function inviteForm(account: Json, members: Json[]): HTMLElement {
  const id = String(account.id);
  const send = async (email: string): Promise<HTMLElement | undefined> => {
    const startedOn = currentNavigation();
    const created = await api("POST", `/admin/api/accounts/${encodeURIComponent(id)}/invitations`, { email });
    const path = String(created.invite_path);
    // The page reads the invitation back as the invitee will see it: e-mail, account, expiry. Always answered, as the
    // link must reach the operator: dropped as a read of a page left meanwhile, it was lost, never shown anywhere.
    const info = await api("POST", "/dashboard/api/invitations/check", { token: path.split("#invite=")[1] ?? "" }, { read: false });
    const box = invitationBox(info, `${location.origin}${path}`);
    // The operator went to another page meanwhile: the link goes in a dialog there, not with this page over it.
    if (currentNavigation() !== startedOn) {
      keptDialog("Invitation link", box);
      return undefined;
    }
    // On screen at once, and kept in the page drawn anew (which a navigation may overtake), as a new key's secret.
    showInvitation(box, String(info.email));
    await accountView(id);
    // The link is what the operator came for: the redrawn page opened at its top, the link far below, unseen and
    // unannounced. Its Copy button takes the focus (and scrolls it into view), as a new key's does.
    return box.querySelector("button")!;
  };
  return form([field("Email", "email", "email", { autocomplete: "off" })], "Invite", async (d) => {
    const email = String(d.get("email")).trim().toLowerCase();
    const existing = members.find((m) => m.email === email);
    if (existing === undefined) {
      (await send(email))?.focus();
      return;
    }
    confirmAction(
      `${email} is already a member of ${String(account.name)}`,
      existing.status === "active"
        ? "They have already set a password. A new invitation lets whoever opens the link set a new one."
        : "They have not accepted their last invitation yet. A new link replaces it.",
      "Send a new invitation",
      () => send(email),
    );
  });
}

/**
 * Removes a member after an in-page confirmation naming them, the account, and how many working keys of
 * theirs are revoked with them; their sessions end at once.
 */
function removeMemberButton(account: Json, member: Json, keys: readonly Json[]): HTMLElement {
  const id = String(account.id);
  const email = String(member.email);
  const theirs = keys.filter((k) => k.created_by === member.id && !k.revoked_at).length;
  const keysLine =
    theirs === 0
      ? "They created no API key that still works."
      : `The ${theirs === 1 ? "API key" : `${theirs} API keys`} they created ${theirs === 1 ? "is" : "are"} revoked with them: requests with ${theirs === 1 ? "it" : "them"} fail at once, unless you keep ${theirs === 1 ? "it" : "them"}.`;
  // Only when there is something to keep: their keys then work on as the account's own.
  const keep = h("input", { type: "checkbox", name: "keep_keys" }) as HTMLInputElement;
  const choice = theirs === 0 ? undefined : h("label", { class: "check" }, keep, " Keep the keys they created working, as the account's own");
  return h(
    "button",
    {
      type: "button",
      class: "secondary",
      "aria-label": `Remove member ${email}`,
      onclick: () =>
        confirmAction(
          `Remove ${email} from ${String(account.name)}?`,
          `They are signed out at once, and neither their password nor any invitation of theirs works any more. ${keysLine} You can invite the e-mail again later.`,
          "Remove member",
          async () => {
            const startedOn = currentNavigation();
            await api(
              "DELETE",
              `/admin/api/accounts/${encodeURIComponent(id)}/members/${encodeURIComponent(String(member.id))}${keep.checked ? "?keep_keys=true" : ""}`,
            );
            say(theirs === 0 ? `${email} removed` : `${email} removed; their keys ${keep.checked ? "kept" : "revoked"}`);
            return redrawn(id, "members-title", startedOn);
          },
          choice,
        ),
    },
    "Remove",
  );
}

/**
 * The account's page drawn again after an action on it, and where the focus goes back to: the action's own button,
 * or the heading of its section when the action took its button away (a revoked key, a removed member). Focusing it
 * brings it into view. The redrawn page opened at its top with the focus on the page, so an operator who revoked a
 * key far down the page was sent back to the top to find it again. `startedOn`: the navigation the action began in
 * (the key revocation checks its own, see revokeButton).
 */
async function redrawn(id: string, placeId: string, startedOn?: number): Promise<HTMLElement | undefined> {
  // Not over the page the operator went to while the action ran.
  if (startedOn !== undefined && currentNavigation() !== startedOn) return undefined;
  await accountView(id);
  const place = document.getElementById(placeId);
  if (place === null) return undefined;
  if (!(place instanceof HTMLButtonElement || place instanceof HTMLSelectElement)) place.setAttribute("tabindex", "-1");
  return place;
}

export async function accountView(id: string): Promise<void> {
  // The id comes from the page's address: encoded, so a crafted link cannot steer the calls to other paths.
  const base = `/admin/api/accounts/${encodeURIComponent(id)}`;
  // Links of new invitations not dismissed yet stay on the page drawn anew (another member removed, the plan changed).
  const links = [...(document.getElementById("invite-result")?.children ?? [])];
  // And so do new keys' secrets, shown once (a plan change or a revocation redraws the page under them).
  const secrets = secretsOnPage();
  const [account, keys, members, usage, breakdown, plans] = await Promise.all([
    api(`GET`, base),
    api<{ data: Json[] }>("GET", `${base}/keys`),
    api<{ data: Json[] }>("GET", `${base}/members`),
    api("GET", `${base}/usage`),
    api<Breakdown & { period: string; daily_requests: Record<string, number> }>("GET", `${base}/usage/breakdown`),
    planNames(),
  ]);
  // Not those dismissed meanwhile, nor those a navigation moved into a dialog (see keepWhatIsLeft).
  const stillShown = links.filter((link) => link.parentElement?.id === "invite-result");
  const name = String(account.name);
  const emailOf = new Map(members.data.map((m) => [String(m.id), String(m.email)]));
  const active = account.status === "active";
  // A plan the server's config no longer defines: the account's keys are refused until it is moved to one it does.
  const served = plans.includes(String(account.plan));
  const plan = h(
    "select",
    { id: "plan-select" },
    ...(served ? [] : [h("option", { value: String(account.plan), selected: true, disabled: true }, `${String(account.plan)} (not served)`)]),
    // Only the server's plans: a fixed list showed custom plans nowhere, and the first option as an account's own.
    ...plans.map((p) => h("option", { value: p, ...(p === account.plan ? { selected: true } : {}) }, p)),
  ) as HTMLSelectElement;
  const { used, limit, tokens } = usageNumbers(usage);
  show(
    h("p", {}, h("a", { href: "#admin" }, "← All accounts")),
    h("h1", {}, `Account ${name}`),
    h(
      "p",
      {},
      h("span", { class: `badge ${String(account.status)}`, "data-testid": "account-status" }, String(account.status)),
      ` · plan ${String(account.plan)} · created `,
      when(account.created_at),
      " · ",
      h("code", {}, id),
    ),
    h(
      "section",
      { "aria-labelledby": "settings-title" },
      h("h2", { id: "settings-title" }, "Plan and status"),
      served
        ? null
        : h(
            "p",
            { class: "error", role: "alert", "data-testid": "plan-not-served" },
            `Its plan '${String(account.plan)}' is not one this server serves (it is not in the config), so its keys are refused. Move it to one of the server's plans.`,
          ),
      h(
        "div",
        { class: "inline" },
        h("label", { for: "plan-select" }, "Plan"),
        plan,
        h(
          "button",
          {
            type: "button",
            id: "change-plan",
            onclick: () => {
              if (plan.value === account.plan) {
                say(`${name} is already on ${plan.value}`);
                return;
              }
              confirmAction(
                `Change ${name} to the ${plan.value} plan?`,
                `It moves from ${String(account.plan)} to ${plan.value} at once: its limits and monthly quota change with it.`,
                `Change to ${plan.value}`,
                async () => {
                  const startedOn = currentNavigation();
                  await api("PATCH", base, { plan: plan.value });
                  say(`Plan changed to ${plan.value}`);
                  return redrawn(id, "change-plan", startedOn);
                },
              );
            },
          },
          "Change plan",
        ),
      ),
      h(
        "p",
        {},
        h(
          "button",
          {
            type: "button",
            id: "status-action",
            class: active ? "secondary" : "",
            onclick: () =>
              confirmAction(
                active ? `Suspend ${name}?` : `Reactivate ${name}?`,
                active ? "All of its keys stop working at once, until it is reactivated." : "Its keys that are not revoked work again at once.",
                active ? `Suspend ${name}` : `Reactivate ${name}`,
                async () => {
                  const startedOn = currentNavigation();
                  await api("PATCH", base, { status: active ? "suspended" : "active" });
                  say(active ? `${name} suspended: its keys are refused` : `${name} reactivated`);
                  return redrawn(id, "status-action", startedOn);
                },
              ),
          },
          active ? "Suspend account" : "Reactivate account",
        ),
      ),
    ),
    h(
      "section",
      { "aria-labelledby": "usage-title", class: "usage" },
      h("h2", { id: "usage-title" }, `Usage in ${breakdown.period} (live)`),
      h("p", { "data-testid": "account-usage" }, `${used.toLocaleString()} / ${limit.toLocaleString()} requests · ${tokens.toLocaleString()} tokens`),
      quotaBar("account-quota", used, limit),
      h(
        "div",
        { class: "charts" },
        dailyChart("account-requests-chart", "Requests per day", "Requests", breakdown.period, breakdown.daily_requests),
        dailyChart("account-tokens-chart", "Tokens per day", "Tokens", breakdown.period, breakdown.daily_tokens),
      ),
      breakdownTables(breakdown, "account"),
    ),
    h(
      "section",
      { "aria-labelledby": "keys-title" },
      h("h2", { id: "keys-title" }, "Keys"),
      // The operator's keys are the account's own (created by no member): a self-hoster needs no member to get one.
      ...createKeyForm(`${base}/keys`, () => accountView(id), secrets(), `New key of ${name}`),
      keys.data.length === 0
        ? h("p", { class: "empty" }, "No keys yet. Create one above, or let its members create theirs on their Keys page.")
        : table(
            ["Name", "Mode", "Key", "Created by", "Created", "Last used", "Action"],
            keyRows(
              keys.data,
              (keyId) => `/admin/api/keys/${keyId}/revoke`,
              () => redrawn(id, "keys-title"),
              (k) => creatorLabel(k, emailOf.get(String(k.created_by))),
            ),
          ),
    ),
    h(
      "section",
      { "aria-labelledby": "members-title" },
      h("h2", { id: "members-title" }, "Members"),
      members.data.length === 0
        ? h("p", { class: "empty" }, "No members yet. Invite the first one below.")
        : table(
            ["Email", "Status", "Invited", "Action"],
            members.data.map((m) => [
              String(m.email),
              h("span", { class: `badge ${String(m.status)}` }, String(m.status)),
              when(m.created_at),
              removeMemberButton(account, m, keys.data),
            ]),
          ),
      h("h3", {}, "Invite a member"),
      inviteForm(account, members.data),
      h("div", { id: "invite-result" }, ...stillShown),
    ),
  );
}
