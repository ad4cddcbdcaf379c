/** API keys as the member's Keys page and the operator's account page both show them: made, listed, revoked. */
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
  keyLabel,
  say,
  showOnTop,
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
 * The new keys' secrets on the page as a view starts drawing it; asked once its data has come, those still there (not
 * dismissed, not taken into a dialog by a navigation meanwhile), for the page drawn anew to keep: rotating a key
 * (create the new one, revoke the old, then copy) used to lose the new secret, which is never shown again, and so did
 * making a second key.
 */
export function secretsOnPage(): () => Element[] {
  const secrets = [...(document.getElementById("new-key")?.children ?? [])];
  return () => secrets.filter((secret) => secret.parentElement?.id === "new-key");
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
function newKeySecret(key: string, name: unknown, title: string): HTMLElement {
  return keepOnLeave(
    h(
      "div",
      { class: "secret" },
      // Named when it has a name: the secrets of several keys made in a row can be on screen together.
      h("strong", {}, `${title}${typeof name === "string" && name !== "" ? ` “${name}”` : ""} — shown once, copy it now:`),
      copyable("secret-value", key, "Copy the new key"),
      doneButton("Done with the new key"),
    ),
    title,
  );
}

/**
 * The form that makes a key (name, mode) by a POST to `createPath`, and the place its secret is shown once, above the
 * keys `redraw` draws anew: a member's Keys page, and an account's page for the operator (a key of the account's own).
 * `shown`: secrets of keys made before, not dismissed yet (secretsOnPage), that the page drawn anew keeps; `title`: whose key
 * the secret says it is, and the title of the dialog it goes into if its person leaves the page.
 */
export function createKeyForm(
  createPath: string,
  redraw: () => Promise<void>,
  shown: readonly Element[] = [],
  title = "Your new key",
): HTMLElement[] {
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
        const secret = newKeySecret(String(created.key), created.name, title);
        // The person went to another page while the key was made: its secret, never shown again, goes in a dialog
        // there. It used to be drawn with the Keys page over that page, or lost when that page came last.
        if (currentNavigation() !== startedOn) return keptDialog(title, secret);
        // On screen at once, and again in the list drawn anew (which a navigation may overtake: then the secret on
        // screen goes into a dialog over the next page, see keepWhatIsLeft).
        showSecret(secret);
        await redraw();
        showSecret(secret);
      },
    ),
    h("div", { id: "new-key" }, ...shown),
  ];
}
