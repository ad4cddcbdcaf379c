/**
 * The dashboard's small toolkit: building elements, calling the JSON API,
 * forms whose errors appear beside them, in-page confirmations and times
 * people read ("3 minutes ago").
 */

export type Json = Record<string, unknown>;
export interface SessionInfo {
  kind: "member" | "operator";
  email?: string;
  account?: { id: string; name: string; plan: string; status: string };
  csrf_token: string;
}

/** GET /dashboard/api/session: who is signed in, or no one (a 200, not a 401 the browser console would print). */
export type SessionAnswer = SessionInfo | { kind: "signed_out" };

/** The signed-in session, if any; `expired` is set when the server stopped honouring it. */
export const state: { session: SessionInfo | undefined; expired: boolean } = { session: undefined, expired: false };

type Child = Node | string | null | undefined | false;
type Attr = string | boolean | ((e: Event) => void);

export function h(tag: string, attrs: Record<string, Attr> = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false) el.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Navigations started so far: an answer to a read made for an earlier one is dropped (see api()). */
let navigations = 0;

/** Starts a navigation: from now on, reads still on their way for the page being left are never answered. */
export function newNavigation(): void {
  navigations++;
}

/** The navigation under way: an action compares it with the one it began in before drawing its result. */
export function currentNavigation(): number {
  return navigations;
}

/** A promise that never settles: what a page's read gets once the person has gone to another page. */
const dropped = <T>(): Promise<T> => new Promise<T>(() => undefined);

/**
 * Calls the JSON API. A read (a GET not marked `read: false`, or a POST marked `read` such as the invitation check) whose answer arrives
 * after another navigation began is never answered, so the page that asked for it is never drawn: a late Usage
 * answer used to replace the Keys page opened after it. Changes (POST, PATCH, DELETE) always settle; an action
 * whose person has left its page meanwhile draws nothing there (see currentNavigation), and what must not be lost
 * (a new key's secret) is shown in a dialog instead.
 */
export async function api<T = Json>(method: string, path: string, body?: unknown, options: { read?: boolean } = {}): Promise<T> {
  const startedIn = navigations;
  const stale = (): boolean => (options.read ?? method === "GET") && startedIn !== navigations;
  const headers: Record<string, string> = {};
  if (body !== undefined || method !== "GET") headers["content-type"] = "application/json";
  if (state.session && method !== "GET") headers["x-csrf-token"] = state.session.csrf_token;
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? (method === "GET" ? undefined : "{}") : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (error) {
    if (stale()) return dropped();
    throw error;
  }
  const json = (await response.json().catch(() => ({}))) as Json;
  if (stale()) return dropped();
  if (!response.ok) {
    if (response.status === 401 && state.session !== undefined) sessionEnded();
    throw new ApiFailure(
      response.status,
      forPeople(((json.error as Json | undefined)?.message as string | undefined) ?? `The server answered HTTP ${response.status}.`),
    );
  }
  return json as T;
}

/** The session ran out (or was signed out elsewhere): back to sign-in, saying why. */
export function sessionEnded(): void {
  state.session = undefined;
  state.expired = true;
  for (const dialog of document.querySelectorAll("dialog")) dialog.remove();
  if (location.hash === "#login") window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = "#login";
}

/** A field's 400 as a person reads it: "Invalid 'password': is one of…" becomes "The password is one of…". */
export function forPeople(message: string): string {
  const field = /^Invalid '([a-z_]+)': ((?:is|must|has) .*)$/su.exec(message);
  if (field !== null) return `The ${field[1]!.replaceAll("_", " ")} ${field[2]!}`;
  // "Invalid 'name': the account name must not be empty." already names the field: the sentence alone.
  const sentence = /^Invalid '[a-z_]+': (the .*)$/su.exec(message);
  return sentence === null ? message : `T${sentence[1]!.slice(1)}`;
}

export const main = (): HTMLElement => document.getElementById("main")!;

export function show(...children: Child[]): void {
  // The page drawn is no longer one being left (see route()), and an inert one could not take the focus below.
  main().inert = false;
  main().replaceChildren(...[suspendedBanner(), ...children].filter((c): c is Node | string => c !== null && c !== undefined && c !== false));
  // Each page named in the title (tabs, history, what a screen reader announces first): every page was "Alveare dashboard".
  const heading = main().querySelector("h1")?.textContent?.trim();
  document.title = heading ? `${heading} · Alveare dashboard` : "Alveare dashboard";
  // Focus goes to the new page for screen readers, without scrolling the header and navigation out of view.
  main().focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

/** On every page of a member whose account is suspended: nothing else would say why each API call gets 403. */
function suspendedBanner(): Child {
  const session = state.session;
  if (session?.kind !== "member" || session.account?.status !== "suspended") return null;
  return h(
    "p",
    { class: "banner", role: "status", "data-testid": "suspended-banner" },
    "This account is suspended: its API keys are refused and no key can be created until an operator reactivates it.",
  );
}

/** Clears the notice, if any. */
export function quiet(): void {
  document.getElementById("status")!.textContent = "";
}

export function say(message: string): void {
  const box = document.getElementById("status")!;
  box.textContent = message;
  setTimeout(() => {
    if (box.textContent === message) box.textContent = "";
  }, 4000);
}

export const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** A form whose errors appear next to it, in words. */
export function form(
  fields: HTMLElement[],
  submitLabel: string,
  onSubmit: (data: FormData, error: HTMLElement) => Promise<void>,
  className = "",
): HTMLElement {
  const error = h("p", { class: "error", role: "alert" });
  const button = h("button", { type: "submit" }, submitLabel) as HTMLButtonElement;
  const el = h("form", { class: className }, ...fields, button, error) as HTMLFormElement;
  // One submission at a time: a double click must not create two keys (and show the secret of only one).
  let sending = false;
  el.addEventListener("submit", (e) => {
    e.preventDefault();
    if (sending) return;
    sending = true;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    // A new attempt makes every other form's refusal on the page stale: a failed operator sign-in went on saying
    // "Invalid admin token." beside the member form's own answer, two alerts for one attempt.
    for (const stale of main().querySelectorAll("form > p.error")) stale.textContent = "";
    onSubmit(new FormData(el), error)
      .catch((err: unknown) => {
        error.textContent = errorText(err);
      })
      .finally(() => {
        sending = false;
        button.disabled = false;
        button.removeAttribute("aria-busy");
        // Disabling the focused button dropped the focus to <body>: after a refused sign-in a keyboard user started
        // again from the top of the page. The button is back where it was, unless a new page replaced the form.
        if (button.isConnected && (document.activeElement === document.body || document.activeElement === null)) button.focus();
      });
  });
  return el;
}

export const field = (label: string, name: string, type = "text", extra: Record<string, string | boolean> = {}): HTMLElement =>
  h("label", {}, label, h("input", { name, type, required: true, ...extra }));

const relative = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
const UNITS: Array<[Intl.RelativeTimeFormatUnit, number]> = [
  ["year", 31536e6],
  ["month", 2592e6],
  ["week", 6048e5],
  ["day", 864e5],
  ["hour", 36e5],
  ["minute", 6e4],
];

/** "3 minutes ago" / "in 7 days", with the exact time on hover and for assistive technology. */
export function when(iso: unknown, empty = "never"): Node {
  if (typeof iso !== "string") return document.createTextNode(empty);
  const at = new Date(iso);
  const diff = at.getTime() - Date.now();
  const [unit, ms] = UNITS.find(([, size]) => Math.abs(diff) >= size) ?? ["second", 1000];
  const text = unit === "second" ? (diff < 0 ? "just now" : "in a moment") : relative.format(Math.round(diff / ms), unit);
  return h("time", { datetime: iso, title: at.toLocaleString() }, text);
}

/**
 * Asks in the page (a modal <dialog>, not window.confirm) before a destructive
 * or billing-relevant action; Cancel has the focus, so Enter does no harm, and
 * the action's own errors stay in the dialog.
 */
export function confirmAction(
  title: string,
  detail: string,
  confirmLabel: string,
  action: () => Promise<HTMLElement | void>,
  choice?: HTMLElement,
): void {
  const error = h("p", { class: "error", role: "alert" });
  // Focus goes back where it was (the button that opened the dialog), or to the page when a new page replaced it:
  // it used to fall to <body>, so a keyboard user started again from the top after Cancel, Escape or the action.
  const opener = document.activeElement;
  // An action may name what the focus should go to next (the result it put on the page): nothing outside a modal
  // dialog can take the focus while it is open, so that has to wait until it is closed.
  const restoreFocus = (next?: HTMLElement | void) => {
    if (next instanceof HTMLElement && next.isConnected) next.focus();
    else if (opener instanceof HTMLElement && opener.isConnected && opener !== document.body) opener.focus();
    else main().focus({ preventScroll: true });
  };
  const close = (next?: HTMLElement | void) => {
    // Already taken away with its page (a navigation, the session's end): the focus is the next page's, and an action
    // that ended after it took it from wherever the person had put it there.
    if (!dialog.isConnected) return;
    dialog.close();
    dialog.remove();
    restoreFocus(next);
  };
  const go = h("button", { type: "button", class: "danger" }, confirmLabel) as HTMLButtonElement;
  go.addEventListener("click", () => {
    go.disabled = true;
    error.textContent = "";
    action().then(close, (err: unknown) => {
      go.disabled = false;
      error.textContent = errorText(err);
    });
  });
  const dialog = openModal(
    { "aria-labelledby": "confirm-title" },
    () => close(),
    h("h2", { id: "confirm-title" }, title),
    h("p", {}, detail),
    choice,
    error,
    h("div", { class: "actions" }, go, h("button", { type: "button", class: "secondary", autofocus: true, onclick: () => close() }, "Cancel")),
  );
}

/** A modal dialog holding `children`, open over the page; Escape calls `onCancel`, which removes it as its buttons do. */
function openModal(attrs: Record<string, string>, onCancel: () => void, ...children: Child[]): HTMLDialogElement {
  const dialog = h("dialog", { class: "confirm", ...attrs }, ...children) as HTMLDialogElement;
  dialog.addEventListener("cancel", (e) => {
    e.preventDefault();
    onCancel();
  });
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

/** Kept dialogs opened so far: each title gets an id of its own. */
let keptDialogs = 0;

/**
 * What an action made that must not be lost (a new key's secret, an invitation's link) when the person left its page
 * while it ran: a dialog over the page now shown, its first button focused, until the person closes it. Navigations
 * close other dialogs, not this one.
 */
export function keptDialog(title: string, content: HTMLElement): void {
  // Made for a session that has ended meanwhile (signed out while it ran): not for whoever is at the screen now.
  if (state.session === undefined) return;
  // A dismiss button of the content's own (the Keys page's "Done") gives way to the dialog's Close.
  for (const dismiss of content.querySelectorAll("[data-dismiss]")) dismiss.remove();
  for (const kept of [content, ...content.querySelectorAll<HTMLElement>("[data-keep-title]")]) delete kept.dataset.keepTitle;
  const close = (): void => {
    dialog.close();
    dialog.remove();
    main().focus({ preventScroll: true });
  };
  // An id of its own: two kept at once (a secret kept at a navigation, then a key whose creation ended after it)
  // were both named by the first one's title.
  const titleId = `kept-title-${++keptDialogs}`;
  const dialog = openModal(
    { "data-keep": "true", "aria-labelledby": titleId },
    close,
    h("h2", { id: titleId }, title),
    content,
    h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: close }, "Close")),
  );
  content.querySelector("button")?.focus();
}

/**
 * Marks what an action drew on its page that must not be lost (a new key's secret, shown once): should the person
 * leave the page while it is there, keepWhatIsLeft() moves it into a kept dialog titled `title`.
 */
export function keepOnLeave<T extends HTMLElement>(content: T, title: string): T {
  content.dataset.keepTitle = title;
  return content;
}

/**
 * As a navigation starts: what the page being left holds that must not be lost goes into a kept dialog, which stays
 * until its person closes it. A new key's secret went with its page (another page, Back), the key useless for good.
 * Signed out, it is only taken off the screen: the next person at a shared screen must not see it.
 */
export function keepWhatIsLeft(): void {
  // Several of one kind (the secrets of keys made one after another) go into one dialog, not one over another.
  const byTitle = new Map<string, HTMLElement[]>();
  for (const content of main().querySelectorAll<HTMLElement>("[data-keep-title]")) {
    const title = content.dataset.keepTitle!;
    content.remove();
    byTitle.set(title, [...(byTitle.get(title) ?? []), content]);
  }
  for (const [title, contents] of byTitle) keptDialog(title, contents.length === 1 ? contents[0]! : h("div", {}, ...contents));
}

/**
 * The Done button of something shown once (a `.secret`: a new key's secret, an invitation link): it takes it off the
 * page for good (a redraw of its list does not bring it back) and gives the focus back to the form that made it,
 * just before that list.
 */
export function doneButton(label: string): HTMLElement {
  const done = (event: Event): void => {
    const box = (event.currentTarget as HTMLElement).closest<HTMLElement>(".secret");
    const list = box?.parentElement;
    if (!box) return;
    box.dataset.dismissed = "true";
    box.remove();
    list?.previousElementSibling?.querySelector<HTMLElement>("button[type=submit]")?.focus();
  };
  return h("button", { type: "button", class: "secondary", "data-dismiss": "true", "aria-label": label, onclick: done }, "Done");
}

/**
 * Puts something shown once at the top of its list, above those not dismissed yet: the newest alone keeps its ids (one
 * of each on the page). One dismissed meanwhile (Done while the list was drawn again) is not brought back.
 */
export function showOnTop(list: HTMLElement | null, box: HTMLElement): void {
  if (list === null || box.dataset.dismissed !== undefined || box.parentElement === list) return;
  for (const older of list.querySelectorAll("[id]")) older.removeAttribute("id");
  list.prepend(box);
}

/**
 * Whether something shown once is still in front of its person: a new key's secret or an invitation link on the page,
 * or the dialog one went into. Reloading or closing the tab then asks first (see app.ts): that lost it for good.
 */
export function holdsSomethingShownOnce(): boolean {
  return document.querySelector("#main [data-keep-title], dialog[data-keep]") !== null;
}

/** A value with a button that copies it. */
export function copyable(id: string, value: string, label: string): HTMLElement {
  return h(
    "div",
    { class: "copy-row" },
    h("code", { id }, value),
    h(
      "button",
      {
        type: "button",
        "aria-label": label,
        onclick: () =>
          void navigator.clipboard.writeText(value).then(
            () => say("Copied"),
            () => say("Copying failed; select the text and copy it"),
          ),
      },
      "Copy",
    ),
  );
}

/**
 * A table; a wide one (`stack`) becomes a stack of labelled cards on narrow
 * screens, so no column is hidden or clipped.
 */
export function table(headers: readonly string[], rows: ReadonlyArray<ReadonlyArray<Child>>, stack = true): HTMLElement {
  return h(
    "table",
    { class: stack ? "stack" : "" },
    h("thead", {}, h("tr", {}, ...headers.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, ...rows.map((cells) => h("tr", {}, ...cells.map((c, i) => h("td", { "data-label": headers[i] ?? "" }, c))))),
  );
}

export const keyLabel = (k: { name?: unknown; prefix?: unknown }): string =>
  typeof k.name === "string" && k.name !== "" ? `“${k.name}” (${String(k.prefix)})` : `${String(k.prefix)} (unnamed)`;
