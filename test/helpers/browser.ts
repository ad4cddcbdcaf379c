import { existsSync } from "node:fs";
import { chromium, type Browser, type Page, type Route } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";

/** Why a browser test is skipped, or false when Debian's Chromium is there (.ci/run installs it). */
export const noChromium: string | false = !existsSync(CHROMIUM) && "Debian's chromium is not installed (.ci/run installs it)";

/** Headless Chromium with the flags this network needs (no background connections to anywhere). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/**
 * Holds the page's requests matching `url` (and `method`, when given) on their way until `release()`, to make a race
 * happen in a set order; `asked` resolves once `count` of them are held.
 */
export async function hold(
  page: Page,
  url: string | ((url: URL) => boolean),
  method?: string,
  count = 1,
): Promise<{ asked: Promise<void>; release: () => Promise<void> }> {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let asked!: () => void;
  const enough = new Promise<void>((resolve) => (asked = resolve));
  let holding = 0;
  const handler = async (route: Route): Promise<void> => {
    if (method !== undefined && route.request().method() !== method) return route.fallback();
    if (++holding === count) asked();
    await held;
    await route.continue().catch(() => undefined);
  };
  await page.route(url, handler);
  return {
    asked: enough,
    release: async () => {
      release();
      await page.unroute(url, handler);
    },
  };
}

/** A POST to a server's admin API with the operator's token; its JSON answer. */
export const adminPoster =
  (serverUrl: string, token: string) =>
  (path: string, body: unknown): Promise<Record<string, unknown>> =>
    fetch(`${serverUrl}/admin/api${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    }).then((r) => r.json() as Promise<Record<string, unknown>>);

/** A page on which `email`, invited to the account, has chosen `password` and is signed in (its Keys page shown). */
export async function invitedMember(
  browser: Browser,
  serverUrl: string,
  admin: ReturnType<typeof adminPoster>,
  accountId: string,
  email: string,
  password: string,
): Promise<Page> {
  const invitation = await admin(`/accounts/${accountId}/invitations`, { email });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${serverUrl}${String(invitation.invite_path)}`);
  await page.getByLabel("New password").fill(password);
  await page.getByRole("button", { name: "Set password and sign in" }).click();
  await page.getByRole("heading", { name: "API keys" }).waitFor();
  return page;
}
