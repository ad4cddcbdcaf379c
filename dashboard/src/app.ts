/**
 * The Alveare dashboard: a small page-per-hash app on the DOM, no framework.
 * Every number it shows comes from the server's JSON API; it keeps nothing but
 * the session's CSRF token in memory (the session itself is an HttpOnly cookie).
 */
import {
  api,
  ApiFailure,
  errorText,
  field,
  form,
  h,
  holdsSomethingShownOnce,
  keepWhatIsLeft,
  newNavigation,
  quiet,
  say,
  sessionEnded,
  show,
  state,
  when,
  type Json,
  type SessionAnswer,
} from "./dom.js";
import { keysView, planView, usageView } from "./member.js";
import { accountsView, accountView } from "./operator.js";
import { activityView, auditFilters, auditView } from "./audit.js";

const MIN_PASSWORD = 12;
const MEMBER_PAGES = ["#keys", "#usage", "#plan", "#activity"];
/** What a link to a menu entry says, on a page that failed. */
const PAGE_NAMES: Record<string, string> = {
  "#admin": "all accounts",
  "#audit": "the whole audit log",
  "#keys": "Keys",
  "#usage": "Usage",
  "#plan": "Plan",
  "#activity": "Activity",
};

/**
 * The menu entry of the page a hash shows: an unknown hash (#bogus, a member's #admin) shows that person's first
 * page, and an account's page is one of the operator's Accounts. The menu marked nothing on those.
 */
function menuEntry(kind: "member" | "operator", hash: string): string {
  if (kind === "member") return MEMBER_PAGES.includes(hash) ? hash : "#keys";
  return hash === "#audit" || hash.startsWith("#audit?") ? "#audit" : "#admin";
}

function renderNav(): void {
  const nav = document.getElementById("nav")!;
  const session = state.session;
  // The name at the top leads to the person's first page: the operator's is Accounts, not a member's Keys.
  document.querySelector<HTMLAnchorElement>("a.brand")?.setAttribute("href", session?.kind === "operator" ? "#admin" : "#keys");
  if (session === undefined) {
    nav.replaceChildren();
    return;
  }
  const current = menuEntry(session.kind, location.hash);
  const link = (hash: string, text: string) => h("a", { href: hash, ...(current === hash ? { "aria-current": "page" } : {}) }, text);
  const links =
    session.kind === "operator"
      ? [link("#admin", "Accounts"), link("#audit", "Audit")]
      : [link("#keys", "Keys"), link("#usage", "Usage"), link("#plan", "Plan"), link("#activity", "Activity")];
  const who = h("span", { class: "who" }, session.kind === "operator" ? "Operator" : (session.email ?? ""));
  nav.replaceChildren(...links, who, h("button", { type: "button", class: "link", onclick: () => void signOut() }, "Sign out"));
}

/**
 * Goes to a page after a sign-in: setting the hash the page already has fires no hashchange, so the sign-in form
 * stayed on screen, signed in, saying nothing (a bookmarked #keys or #admin, or Back after signing out).
 */
function go(hash: string): void {
  if (location.hash === hash) void route();
  else location.hash = hash;
}

/**
 * Where a sign-in lands: the page in the address bar when it is one of that person's (a bookmarked #usage, an
 * account's page the operator reloaded after their session ended), else their first page. Every member sign-in
 * used to land on Keys and every operator sign-in on Accounts.
 */
function landing(kind: "member" | "operator"): string {
  const hash = location.hash;
  return kind === "operator" && (hash.startsWith("#account=") || hash.startsWith("#audit?")) ? hash : menuEntry(kind, hash);
}

async function signOut(): Promise<void> {
  try {
    await api("POST", "/dashboard/api/logout");
  } catch (error) {
    // A 401 means the session had already ended (api() has sent the page to sign-in). Anything else leaves the session
    // valid on the server: the page used to show the sign-in form anyway, so a person on a shared computer believed
    // they were signed out while a reload showed them still signed in.
    if (!(error instanceof ApiFailure && error.status === 401)) {
      say(`Signing out failed (${errorText(error)}): you are still signed in. Try again.`);
      return;
    }
  }
  state.session = undefined;
  location.hash = "#login";
}

async function loginView(): Promise<void> {
  const options = await api<{ operator_sign_in: boolean }>("GET", "/dashboard/api/sign-in-options").catch(() => ({ operator_sign_in: false }));
  const expired = state.expired;
  state.expired = false;
  show(
    h("h1", {}, "Sign in"),
    expired ? h("p", { class: "notice", role: "alert" }, "Your session has expired or was signed out. Sign in again to go on.") : null,
    form(
      [
        field("Email", "email", "email", { autocomplete: "username" }),
        field("Password", "password", "password", { autocomplete: "current-password" }),
      ],
      "Sign in",
      async (d) => {
        await api("POST", "/dashboard/api/login", { email: d.get("email"), password: d.get("password") });
        await loadSession(true);
        go(landing("member"));
      },
    ),
    h("p", { class: "muted" }, "New here? Your operator sends you an invitation link; open it to set your password."),
    h("h2", {}, "Operator"),
    options.operator_sign_in
      ? form([field("Admin token", "token", "password", { autocomplete: "off" })], "Sign in as operator", async (d) => {
          await api("POST", "/dashboard/api/admin-login", { token: d.get("token") });
          await loadSession(true);
          go(landing("operator"));
        })
      : h(
          "div",
          { class: "notice", "data-testid": "operator-off" },
          h("p", {}, "Operator sign-in is turned off on this server."),
          h("p", {}, "To turn it on, restart the server with ALVEARE_ADMIN_TOKEN set to a secret of at least 32 characters, for example:"),
          // Exported and printed: a token generated inline for one command is never seen, so nobody could sign in with it.
          h("pre", { tabindex: "0" }, 'export ALVEARE_ADMIN_TOKEN="$(openssl rand -hex 32)"\necho "$ALVEARE_ADMIN_TOKEN"\nalveare serve'),
          h("p", {}, "Then sign in here with the token that echo printed."),
        ),
  );
}

async function inviteView(token: string): Promise<void> {
  let info: Json;
  try {
    info = await api("POST", "/dashboard/api/invitations/check", { token }, { read: true });
  } catch (error) {
    // A link that cannot be accepted (unknown, used, expired, replaced) says so and nothing more: whoever holds an old
    // link is not told whom it was for (see the check's route).
    show(
      h("h1", {}, "Invitation not valid"),
      h("p", { class: "error", role: "alert", "data-testid": "invitation-state" }, errorText(error)),
      // Opened again by whoever used it, now signed in: sign-in is not where they are going.
      ...(state.session === undefined
        ? [h("p", {}, "If you already set a password with it, sign in."), h("p", {}, h("a", { href: "#login" }, "Go to sign-in"))]
        : [h("p", {}, "You are signed in."), h("p", {}, h("a", { href: menuEntry(state.session.kind, "") }, "Go to your dashboard"))]),
    );
    return;
  }
  const intro = h("p", {}, `You are invited to join the account ${String(info.account_name)} as ${String(info.email)}.`);
  show(
    h("h1", {}, "Set your password"),
    intro,
    h("p", { class: "muted", "data-testid": "invitation-expiry" }, "This link works once and expires ", when(info.expires_at), "."),
    form(
      [
        h("input", { type: "email", name: "email", value: String(info.email), autocomplete: "username", readonly: true, hidden: true }),
        field("New password", "password", "password", {
          minlength: String(MIN_PASSWORD),
          autocomplete: "new-password",
          "aria-describedby": "password-hint",
        }),
        h("p", { id: "password-hint", class: "muted" }, `At least ${MIN_PASSWORD} characters; a common password is refused.`),
      ],
      "Set password and sign in",
      async (d) => {
        await api("POST", "/dashboard/api/invitations/accept", { token, password: d.get("password") });
        history.replaceState(null, "", "#keys"); // the token leaves the address bar
        await loadSession(true);
        await route();
      },
    ),
  );
}

/**
 * Who is signed in. `settle`: at start and after a sign-in the answer is awaited whatever page is opened meanwhile, as
 * nothing else says who is signed in: dropped like a page's read (see api()), a hash change while the page loaded
 * (Back, the name at the top) left a signed-in person at the sign-in form, and a sign-in's form stuck, its button off.
 */
async function loadSession(settle = false): Promise<void> {
  const answer = await api<SessionAnswer>("GET", "/dashboard/api/session", undefined, { read: !settle }).catch(() => undefined);
  // A session the page held that the server no longer knows has ended: sign-in says so, as for a 401 elsewhere.
  if (answer?.kind === "signed_out" && state.session !== undefined) sessionEnded();
  state.session = answer?.kind === "member" || answer?.kind === "operator" ? answer : undefined;
}

async function route(): Promise<void> {
  newNavigation(); // the page being left draws nothing more, whenever its data arrives
  // A confirmation belongs to the page it was asked on (Back while it was open left it over the next page, and
  // stuck once its action's redraw was dropped); a dialog holding a new key's secret stays until closed, unless
  // nobody is signed in any more (signed out: the next person at a shared screen must not see it).
  for (const dialog of document.querySelectorAll(state.session === undefined ? "dialog" : "dialog:not([data-keep])")) dialog.remove();
  // A new key's secret on the page being left is kept that way too (dropped when nobody is signed in).
  keepWhatIsLeft();
  // The address names the page shown: a member's #admin or a #bogus shows their first page, and kept the address.
  const session = state.session;
  if (session !== undefined && !location.hash.startsWith("#invite=")) {
    const shown = landing(session.kind);
    if (shown !== location.hash) history.replaceState(null, "", shown);
  }
  const hash = location.hash || "#keys";
  renderNav();
  // While the next page's data loads, the one on screen is marked stale (aria-busy, dimmed): the menu already
  // names the new page, and nothing else said that anything was happening.
  const page = document.getElementById("main");
  page?.setAttribute("aria-busy", "true");
  // ...and it cannot be acted on (show() lifts this as it draws the next one): what was started there began after the
  // navigation, so nothing told it that its page was being left. A month picked there dropped the next page's reads
  // (the address on Keys, Usage drawn, aria-busy for good), and a key created there had its secret drawn on a Keys
  // page the next one replaced, or the Keys page drawn over the next one.
  if (page !== null) page.inert = true;
  try {
    await showPage(hash);
  } finally {
    page?.removeAttribute("aria-busy");
    if (page !== null) page.inert = false;
  }
}

async function showPage(hash: string): Promise<void> {
  try {
    if (hash.startsWith("#invite=")) return await inviteView(hash.slice("#invite=".length));
    const session = state.session;
    if (session === undefined) return await loginView();
    if (session.kind === "member") {
      await loadSession(); // the plan and status an operator may have changed since sign-in
      // A session that ended has already sent the page to sign-in, saying why (see api()).
      if (state.session === undefined) return state.expired ? undefined : await loginView();
    }
    if (session.kind === "operator") {
      if (hash.startsWith("#account=")) return await accountView(decodeURIComponent(hash.slice("#account=".length)));
      if (menuEntry("operator", hash) === "#audit") return await auditView(auditFilters(hash));
      return await accountsView();
    }
    if (hash === "#usage") return await usageView();
    if (hash === "#plan") return await planView();
    if (hash === "#activity") return await activityView();
    return await keysView();
  } catch (error) {
    // An expired session has already sent the page to sign-in (see api()).
    if (error instanceof ApiFailure && error.status === 401) {
      if (!state.expired) await loginView();
      return;
    }
    // A way on from here: the page's menu entry for what is not there (a mistyped or deleted account's link), and
    // another try for what failed (it may have been the network). It was a dead end with a raw message.
    const missing = error instanceof ApiFailure && error.status === 404;
    const home = menuEntry(state.session?.kind ?? "member", hash);
    show(
      h("h1", {}, missing ? "Not found" : "Something went wrong"),
      h("p", { class: "error", role: "alert" }, errorText(error)),
      home !== hash
        ? h("p", {}, h("a", { href: home }, `Go to ${PAGE_NAMES[home] ?? "the first page"}`))
        : h("button", { type: "button", class: "secondary", onclick: () => void route() }, "Try again"),
    );
  }
}

window.addEventListener("hashchange", () => {
  // A notice ("Copied", "Account … created") belongs to the page it was said on.
  quiet();
  void route();
});
// A reload or a closed tab took an undismissed key secret or invitation link with it, never to be shown again: the
// browser asks first (its own wording; pages cannot set the text any more).
window.addEventListener("beforeunload", (event) => {
  if (!holdsSomethingShownOnce()) return;
  event.preventDefault();
  event.returnValue = ""; // what older browsers read instead of preventDefault()
});
void loadSession(true).then(route);
