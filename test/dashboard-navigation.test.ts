import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import { adminPoster, hold, invitedMember, launchChromium, noChromium } from "./helpers/browser.js";
import { backdateAccount, startTestServer, type TestServer } from "./helpers/fixtures.js";

const TOKEN = "operator-token-for-the-navigation-test";
const PASSWORD = "a long enough password";

/** Lets the page's own code have its turn with whatever just arrived. */
const settle = (page: Page): Promise<unknown> => page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 400)));

describe("dashboard navigation races", { skip: noChromium }, () => {
  let server: TestServer;
  let browser: Browser;
  let member: Page;
  let operator: Page;
  let accountId: string;
  const admin = (path: string, body: unknown) => adminPoster(server.url, TOKEN)(path, body);

  before(async () => {
    server = await startTestServer({}, { gated: true, env: { ALVEARE_ADMIN_TOKEN: TOKEN } });
    browser = await launchChromium();
    accountId = String((await admin("/accounts", { name: "acme", plan: "starter" })).id);
    backdateAccount(server, accountId); // the month picker steps through months the account has had
    await admin(`/accounts/${accountId}/keys`, { name: "to-revoke" });
    member = await invitedMember(browser, server.url, admin, accountId, "dev@acme.example", PASSWORD);
    operator = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await operator.goto(`${server.url}/dashboard/#admin`);
    await operator.getByLabel("Admin token").fill(TOKEN);
    await operator.getByRole("button", { name: "Sign in as operator" }).click();
    await operator.getByRole("heading", { name: "Accounts" }).waitFor();
  });
  after(async () => {
    await browser?.close();
    await server?.close();
  });

  it("a month picked on the Usage page while another page loads does not take that page's place", async () => {
    await member.goto(`${server.url}/dashboard/#usage`);
    await member.locator("main:not([aria-busy]) h1", { hasText: "Usage" }).waitFor();
    const keys = await hold(member, "**/dashboard/api/keys", "GET");
    try {
      await member.locator("#month").focus();
      await member.evaluate("location.hash = '#keys'"); // Back, or a link followed from the keyboard
      await keys.asked;
      await member.keyboard.press("ArrowDown");
      await settle(member);
      await keys.release();
      // Before, the month picked dropped the Keys page's reads: Usage stayed under #keys, marked busy for good.
      await member.locator("main:not([aria-busy]) h1", { hasText: "API keys" }).waitFor({ timeout: 5000 });
      assert.equal(await member.evaluate("location.hash"), "#keys");
    } finally {
      await keys.release();
    }
  });

  it("a page being left cannot be acted on: a key made there had its secret drawn on a Keys page the next one replaced", async () => {
    await member.goto(`${server.url}/dashboard/#keys`);
    await member.reload(); // whatever the test before left on screen
    await member.locator("main:not([aria-busy]) h1", { hasText: "API keys" }).waitFor();
    await member.getByLabel("Name", { exact: true }).fill("made-on-a-page-left");
    const button = (await member.getByRole("button", { name: "Create key" }).boundingBox())!;
    const plan = await hold(member, "**/dashboard/api/plan", "GET");
    try {
      await member.getByRole("link", { name: "Plan" }).click();
      await plan.asked;
      // A click on the Keys page still on screen, dimmed, while Plan loads.
      await member.mouse.click(button.x + button.width / 2, button.y + button.height / 2);
      await settle(member);
      await plan.release();
      await member.locator("main:not([aria-busy]) h1", { hasText: "Plan" }).waitFor();
      await settle(member);
      const keys = (await (
        await fetch(`${server.url}/admin/api/accounts/${accountId}/keys`, { headers: { authorization: `Bearer ${TOKEN}` } })
      ).json()) as { data: Array<{ name: string | null }> };
      // Before, the key was made and its secret, never shown again, went with the Keys page the Plan page replaced.
      const made = keys.data.some((k) => k.name === "made-on-a-page-left");
      assert.ok(!made || (await member.locator("#secret-value").count()) === 1, "a key made has its secret on screen");
      assert.equal(made, false);
      assert.match((await member.locator("main h1").textContent()) ?? "", /^Plan/);
    } finally {
      await plan.release();
    }
  });

  it("an account created while the operator went to another page does not draw Accounts over it", async () => {
    await operator.getByRole("link", { name: "Accounts" }).click();
    await operator.locator("main:not([aria-busy]) h1", { hasText: "Accounts" }).waitFor();
    const create = await hold(operator, "**/admin/api/accounts", "POST");
    try {
      await operator.getByLabel("Name").fill("globex");
      await operator.getByRole("button", { name: "Create account" }).click();
      await create.asked;
      await operator.getByRole("link", { name: "Audit" }).click();
      await operator.locator("main:not([aria-busy]) h1", { hasText: "Audit log" }).waitFor();
      await create.release();
      await operator.locator("#status", { hasText: "Account globex created" }).waitFor();
      await settle(operator);
      assert.equal(await operator.locator("main h1").textContent(), "Audit log");
      assert.equal(await operator.evaluate("location.hash"), "#audit");
    } finally {
      await create.release();
    }
  });

  it("an invitation sent while the operator went to another page: its link in a dialog there", async () => {
    await operator.goto(`${server.url}/dashboard/#account=${accountId}`);
    await operator.locator("main:not([aria-busy]) h1", { hasText: "Account acme" }).waitFor();
    const check = await hold(operator, "**/dashboard/api/invitations/check", "POST");
    try {
      await operator.getByLabel("Email").fill("second@acme.example");
      await operator.getByRole("button", { name: "Invite" }).click();
      await check.asked;
      await operator.getByRole("link", { name: "← All accounts" }).click();
      await operator.locator("main:not([aria-busy]) h1", { hasText: "Accounts" }).waitFor();
      await check.release();
      const dialog = operator.getByRole("dialog", { name: "Invitation link" });
      await dialog.waitFor({ timeout: 5000 });
      assert.match((await dialog.locator("#invite-url").textContent()) ?? "", /#invite=/);
      await dialog.getByRole("button", { name: "Close" }).click();
    } finally {
      await check.release();
    }
  });

  it("a confirmation's action that ends after Back leaves the focus where the person put it on the page now shown", async () => {
    await member.getByRole("link", { name: "Usage" }).click();
    await member.locator("main:not([aria-busy]) h1", { hasText: "Usage" }).waitFor();
    await member.getByRole("link", { name: "Keys" }).click();
    await member.locator("main:not([aria-busy]) h1", { hasText: "API keys" }).waitFor();
    const revoke = await hold(member, "**/dashboard/api/keys/*/revoke", "POST");
    try {
      await member
        .getByRole("button", { name: /^Revoke key/ })
        .first()
        .click();
      await member.getByRole("dialog").getByRole("button", { name: "Revoke key" }).click();
      await revoke.asked;
      await member.goBack();
      await member.locator("main:not([aria-busy]) h1", { hasText: "Usage" }).waitFor();
      await member.locator("#month").focus();
      await revoke.release();
      await member.locator("#status", { hasText: "revoked" }).waitFor();
      await settle(member);
      assert.equal(await member.evaluate("document.activeElement?.id"), "month");
    } finally {
      await revoke.release();
    }
  });

  it("a key made while its person signed out is shown to nobody: no dialog over the sign-in page", async () => {
    const page = await browser.newPage();
    await page.goto(`${server.url}/dashboard/#keys`);
    await page.getByLabel("Email").fill("dev@acme.example");
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await page.locator("main:not([aria-busy]) h1", { hasText: "API keys" }).waitFor();
    // The key is made on the server; its answer is held on the way back.
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    let made!: () => void;
    const keyMade = new Promise<void>((resolve) => (made = resolve));
    await page.route("**/dashboard/api/keys", async (route) => {
      if (route.request().method() !== "POST") return route.fallback();
      const response = await route.fetch();
      made();
      await held;
      await route.fulfill({ response }).catch(() => undefined);
    });
    try {
      await page.getByLabel("Name", { exact: true }).fill("made-while-signing-out");
      await page.getByRole("button", { name: "Create key" }).click();
      await keyMade;
      // Signed out on a shared computer while the key's answer was on its way.
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.getByRole("heading", { name: "Sign in" }).waitFor();
      const answered = page.waitForEvent("requestfinished", (r) => r.url().endsWith("/dashboard/api/keys") && r.method() === "POST");
      release();
      await answered;
      await settle(page);
      // Before, its secret opened in a dialog over the sign-in page, for the next person at the screen.
      assert.equal(await page.locator("dialog").count(), 0);
      assert.equal(await page.locator("#secret-value").count(), 0);
    } finally {
      release();
      await page.close();
    }
  });

  /** A member's own page, signed in, in a context that may read the clipboard (to check the Copy button). */
  async function memberOnKeys(): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, permissions: ["clipboard-read", "clipboard-write"] });
    const page = await context.newPage();
    await page.goto(`${server.url}/dashboard/#keys`);
    await page.getByLabel("Email").fill("dev@acme.example");
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await page.locator("main:not([aria-busy]) h1", { hasText: "API keys" }).waitFor();
    return page;
  }

  it("a new key's secret survives Back once the list is drawn: in a dialog until its person closes it", async () => {
    const page = await memberOnKeys();
    try {
      await page.getByRole("link", { name: "Usage" }).click();
      await page.locator("main:not([aria-busy]) h1", { hasText: "Usage" }).waitFor();
      await page.getByRole("link", { name: "Keys" }).click();
      await page.locator("main:not([aria-busy]) h1", { hasText: "API keys" }).waitFor();
      await page.getByLabel("Name", { exact: true }).fill("kept-after-back");
      await page.getByRole("button", { name: "Create key" }).click();
      await page.getByRole("cell", { name: "kept-after-back", exact: true }).waitFor();
      const secret = (await page.locator("#secret-value").textContent()) ?? "";
      assert.match(secret, /^alv_live_/);
      await page.goBack();
      await page.locator("main:not([aria-busy]) h1", { hasText: "Usage" }).waitFor();
      // Before, the secret went with the Keys page: never shown again, the key useless.
      const dialog = page.getByRole("dialog", { name: "Your new key" });
      await dialog.waitFor({ timeout: 5000 });
      assert.equal(await dialog.locator("#secret-value").textContent(), secret);
      assert.equal(await page.evaluate("document.activeElement?.getAttribute('aria-label')"), "Copy the new key");
      assert.equal(await dialog.getByRole("button", { name: /^Done/ }).count(), 0, "the dialog's Close dismisses it");
      await dialog.getByRole("button", { name: "Copy the new key" }).click();
      await page.locator("#status", { hasText: "Copied" }).waitFor();
      assert.equal(await page.evaluate("navigator.clipboard.readText()"), secret);
      // Other pages do not take it away either: only its person does.
      await page.evaluate("location.hash = '#plan'");
      await page.locator("main:not([aria-busy]) h1", { hasText: "Plan" }).waitFor();
      assert.equal(await dialog.locator("#secret-value").textContent(), secret);
      await page.keyboard.press("Escape");
      await dialog.waitFor({ state: "detached" });
      await page.evaluate("location.hash = '#keys'");
      await page.locator("main:not([aria-busy]) h1", { hasText: "API keys" }).waitFor();
      assert.equal(await page.locator("#secret-value").count(), 0, "shown once: closed, it is gone");
    } finally {
      await page.context().close();
    }
  });

  it("a new key's secret survives leaving the page while the list is being drawn again", async () => {
    const page = await memberOnKeys();
    try {
      await page.getByLabel("Name", { exact: true }).fill("kept-while-drawing");
      const list = await hold(page, "**/dashboard/api/keys", "GET");
      try {
        await page.getByRole("button", { name: "Create key" }).click();
        await list.asked; // the key is made, its secret on the page; the list drawn anew is on its way
        const secret = (await page.locator("#secret-value").textContent()) ?? "";
        assert.match(secret, /^alv_live_/);
        await page.getByRole("link", { name: "Plan" }).click();
        await page.locator("main:not([aria-busy]) h1", { hasText: "Plan" }).waitFor();
        await list.release();
        await settle(page);
        const dialog = page.getByRole("dialog", { name: "Your new key" });
        assert.equal(await dialog.locator("#secret-value").textContent(), secret);
        assert.equal(await page.evaluate("document.activeElement?.getAttribute('aria-label')"), "Copy the new key");
        assert.match((await page.locator("main h1").textContent()) ?? "", /^Plan/);
        await dialog.getByRole("button", { name: "Close" }).click();
        await dialog.waitFor({ state: "detached" });
        assert.equal(await page.locator("#secret-value").count(), 0);
      } finally {
        await list.release();
      }
    } finally {
      await page.context().close();
    }
  });

  it("two dialogs kept at once are each named by their own title", async () => {
    const page = await memberOnKeys();
    try {
      // A key's secret on the page, and a second key on its way when the person leaves: the first secret goes into a
      // dialog at the navigation, the second into another when its creation ends.
      await page.getByLabel("Name", { exact: true }).fill("first-titled");
      await page.getByRole("button", { name: "Create key" }).click();
      await page.locator("#secret-value").waitFor();
      const create = await hold(page, "**/dashboard/api/keys", "POST");
      try {
        await page.getByLabel("Name", { exact: true }).fill("second-titled");
        await page.getByRole("button", { name: "Create key" }).click();
        await create.asked;
        await page.getByRole("link", { name: "Plan" }).click();
        await page.locator("main:not([aria-busy]) h1", { hasText: "Plan" }).waitFor();
        await create.release();
        await page.locator("dialog[data-keep]").nth(1).waitFor();
        const named = await page.evaluate(
          `[...document.querySelectorAll("dialog[data-keep]")].map((d) => d.contains(document.getElementById(d.getAttribute("aria-labelledby"))))`,
        );
        assert.deepEqual(named, [true, true], "each dialog's aria-labelledby names a heading inside it");
      } finally {
        await create.release();
      }
    } finally {
      await page.context().close();
    }
  });

  it("a new key's secret dismissed on the Keys page stays gone; one on screen at sign-out is shown to nobody", async () => {
    const page = await memberOnKeys();
    try {
      await page.getByLabel("Name", { exact: true }).fill("dismissed");
      await page.getByRole("button", { name: "Create key" }).click();
      await page.getByRole("cell", { name: "dismissed", exact: true }).waitFor();
      await page.getByRole("button", { name: "Done with the new key" }).click();
      assert.equal(await page.locator("#secret-value").count(), 0);
      assert.equal(await page.evaluate("document.activeElement?.textContent"), "Create key");
      await page.getByRole("link", { name: "Usage" }).click();
      await page.locator("main:not([aria-busy]) h1", { hasText: "Usage" }).waitFor();
      assert.equal(await page.locator("dialog").count(), 0, "dismissed, it does not follow its person");

      await page.getByRole("link", { name: "Keys" }).click();
      await page.locator("main:not([aria-busy]) h1", { hasText: "API keys" }).waitFor();
      await page.getByLabel("Name", { exact: true }).fill("on-screen-at-sign-out");
      await page.getByRole("button", { name: "Create key" }).click();
      await page.getByRole("cell", { name: "on-screen-at-sign-out", exact: true }).waitFor();
      const options = await hold(page, "**/dashboard/api/sign-in-options", "GET");
      try {
        await page.getByRole("button", { name: "Sign out" }).click();
        await options.asked;
        // Off the screen at once, not left on the dimmed page while the sign-in page loads.
        assert.equal(await page.locator("#secret-value").count(), 0);
        assert.equal(await page.locator("dialog").count(), 0);
      } finally {
        await options.release();
      }
      await page.getByRole("heading", { name: "Sign in" }).first().waitFor();
      await settle(page);
      assert.equal(await page.locator("#secret-value").count(), 0);
      assert.equal(await page.locator("dialog").count(), 0);
    } finally {
      await page.context().close();
    }
  });

  it("a second key made before the first one's secret is dismissed leaves that secret on the page too", async () => {
    const page = await memberOnKeys();
    try {
      const secrets = page.locator("#new-key code");
      await page.getByLabel("Name", { exact: true }).fill("first-of-two");
      await page.getByRole("button", { name: "Create key" }).click();
      await page.getByRole("cell", { name: "first-of-two", exact: true }).waitFor();
      const first = (await page.locator("#secret-value").textContent()) ?? "";
      assert.match(first, /^alv_live_/);
      await page.getByLabel("Name", { exact: true }).fill("second-of-two");
      await page.getByRole("button", { name: "Create key" }).click();
      await page.getByRole("cell", { name: "second-of-two", exact: true }).waitFor();
      await settle(page);
      const second = (await page.locator("#secret-value").textContent()) ?? "";
      assert.match(second, /^alv_live_/);
      assert.notEqual(second, first);
      // Before, the second secret took the first one's place: never shown again, undismissed.
      assert.deepEqual(await secrets.allTextContents(), [second, first], "the newest first, the one not dismissed below it");
      assert.match((await page.locator("#new-key .secret").nth(1).textContent()) ?? "", /“first-of-two”/, "each secret names its key");
      assert.equal(await page.evaluate("document.activeElement?.getAttribute('aria-label')"), "Copy the new key");
      // Revoking a key draws the list again: both stay.
      await page
        .getByRole("button", { name: /^Revoke/ })
        .first()
        .click();
      await page
        .getByRole("dialog")
        .getByRole("button", { name: /^Revoke/ })
        .click();
      await page.getByRole("dialog").waitFor({ state: "detached" });
      await settle(page);
      assert.deepEqual(await secrets.allTextContents(), [second, first]);
      // Each is dismissed on its own; leaving the page takes the other along in a dialog.
      await page.getByRole("button", { name: "Done with the new key" }).first().click();
      assert.deepEqual(await secrets.allTextContents(), [first]);
      await page.getByRole("link", { name: "Usage" }).click();
      await page.locator("main:not([aria-busy]) h1", { hasText: "Usage" }).waitFor();
      const dialog = page.getByRole("dialog", { name: "Your new key" });
      assert.equal(await dialog.locator("code").textContent(), first);
      await dialog.getByRole("button", { name: "Close" }).click();
      await dialog.waitFor({ state: "detached" });
    } finally {
      await page.context().close();
    }
  });

  it("closing or reloading the tab asks first while a new key's secret is on screen, and not once it is dismissed", async () => {
    const page = await memberOnKeys();
    const closed = new Promise((resolve) => page.once("close", resolve));
    try {
      // Every question is counted; "Stay on page" while a secret is there, "Leave" at the end (should it still ask).
      const asked: string[] = [];
      let answer: "dismiss" | "accept" = "dismiss";
      page.on("dialog", (dialog) => {
        asked.push(dialog.type());
        void dialog[answer]();
      });
      const question = (): Promise<unknown> => page.waitForEvent("dialog", { timeout: 10_000 });
      await page.getByLabel("Name", { exact: true }).fill("before-unload");
      await page.getByRole("button", { name: "Create key" }).click();
      await page.getByRole("cell", { name: "before-unload", exact: true }).waitFor();
      const secret = (await page.locator("#secret-value").textContent()) ?? "";
      assert.match(secret, /^alv_live_/);
      // Before, a reload or a closed tab took the secret with it, never shown again.
      let asking = question();
      await page.close({ runBeforeUnload: true });
      await asking;
      assert.deepEqual(asked, ["beforeunload"]);
      assert.equal(page.isClosed(), false, "the person chose to stay");
      assert.equal(await page.locator("#secret-value").textContent(), secret);
      // In its dialog over another page, it still asks.
      await page.getByRole("link", { name: "Usage" }).click();
      const dialog = page.getByRole("dialog", { name: "Your new key" });
      await dialog.waitFor();
      asking = question();
      await page.close({ runBeforeUnload: true });
      await asking;
      assert.deepEqual(asked, ["beforeunload", "beforeunload"]);
      assert.equal(page.isClosed(), false);
      // Closed: nothing is left that would be lost, and the tab closes without a question.
      await dialog.getByRole("button", { name: "Close" }).click();
      await dialog.waitFor({ state: "detached" });
      answer = "accept";
      await page.close({ runBeforeUnload: true });
      await closed;
      assert.deepEqual(asked, ["beforeunload", "beforeunload"]);
    } finally {
      await page.context().close();
    }
  });

  it("invitation links stay until dismissed: beside each other, through a redraw, and in a dialog after leaving", async () => {
    const links = operator.locator("#invite-result .secret");
    const invite = async (email: string): Promise<string> => {
      await operator.getByLabel("Email").fill(email);
      await operator.getByRole("button", { name: "Invite" }).click();
      await links.filter({ hasText: email }).locator("code").waitFor();
      await settle(operator);
      return (await links.filter({ hasText: email }).locator("code").textContent()) ?? "";
    };
    await operator.goto(`${server.url}/dashboard/#account=${accountId}`);
    await operator.locator("main:not([aria-busy]) h1", { hasText: "Account acme" }).waitFor();
    const first = await invite("first-link@acme.example");
    const second = await invite("second-link@acme.example");
    // Before, the second link took the first one's place: that invitation then worked, but nobody had its link.
    assert.deepEqual(await links.locator("code").allTextContents(), [second, first], "the newest first");
    assert.equal(await operator.locator("#invite-url").textContent(), second, "the newest alone carries the ids");
    // A new invitation to the same e-mail replaces its link: the old one, which no longer works, goes.
    await operator.getByLabel("Email").fill("first-link@acme.example");
    await operator.getByRole("button", { name: "Invite" }).click();
    await operator.getByRole("dialog").getByRole("button", { name: "Send a new invitation" }).click();
    await operator.locator("#invite-url").filter({ hasNotText: second }).waitFor();
    await settle(operator);
    const again = (await operator.locator("#invite-url").textContent()) ?? "";
    assert.notEqual(again, first);
    assert.deepEqual(await links.locator("code").allTextContents(), [again, second]);
    // The page drawn anew (a member removed) keeps them.
    await operator.getByRole("button", { name: "Remove member second-link@acme.example" }).click();
    await operator.getByRole("dialog").getByRole("button", { name: "Remove member" }).click();
    await operator.getByRole("dialog").waitFor({ state: "detached" });
    await operator.getByRole("cell", { name: "second-link@acme.example" }).waitFor({ state: "detached" });
    await settle(operator);
    assert.deepEqual(await links.locator("code").allTextContents(), [again, second]);
    // Done dismisses one; leaving the page takes the other into a dialog (before, it was lost).
    await operator.getByRole("button", { name: "Done with the invitation link" }).nth(1).click();
    assert.deepEqual(await links.locator("code").allTextContents(), [again]);
    assert.equal(await operator.evaluate("document.activeElement?.textContent"), "Invite", "the focus goes back to the form that made it");
    await operator.getByRole("link", { name: "← All accounts" }).click();
    await operator.locator("main:not([aria-busy]) h1", { hasText: "Accounts" }).waitFor();
    const dialog = operator.getByRole("dialog", { name: "Invitation link" });
    assert.equal(await dialog.locator("code").textContent(), again);
    assert.equal(await dialog.getByRole("button", { name: "Done with the invitation link" }).count(), 0, "the dialog's Close dismisses it");
    await dialog.getByRole("button", { name: "Close" }).click();
    await dialog.waitFor({ state: "detached" });
  });

  it("older audit records that cannot be read say so beside their button", async () => {
    for (let i = 0; i < 101; i++) await admin(`/accounts/${accountId}/keys`, {});
    const errors: string[] = [];
    operator.on("pageerror", (e) => errors.push(e.message));
    await operator.goto(`${server.url}/dashboard/#audit`);
    await operator.locator("main:not([aria-busy]) h1", { hasText: "Audit log" }).waitFor();
    const older = (url: URL): boolean => url.pathname === "/admin/api/audit" && url.searchParams.has("cursor");
    await operator.route(older, (route) =>
      route.fulfill({
        status: 503,
        contentType: "application/json",
        body: JSON.stringify({ error: { type: "server_error", code: "unavailable", message: "Down for a moment.", param: null } }),
      }),
    );
    try {
      await operator.getByRole("button", { name: "Show older records" }).click();
      // Before, the button did nothing: the failure was an unhandled rejection.
      await operator.getByRole("alert").getByText("Older records could not be read: Down for a moment.").waitFor({ timeout: 5000 });
      assert.deepEqual(errors, []);
    } finally {
      await operator.unroute(older);
    }
    await operator.getByRole("button", { name: "Show older records" }).click();
    await operator.locator("#audit-records tbody tr").nth(100).waitFor();
    assert.equal(await operator.getByText("Older records could not be read", { exact: false }).count(), 0);
  });
});
