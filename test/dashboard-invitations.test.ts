import assert from "node:assert/strict";
import Database from "better-sqlite3";
import { after, before, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import { databasePath } from "../src/server/server.js";
import { launchChromium, noChromium } from "./helpers/browser.js";
import { startTestServer, type TestServer } from "./helpers/fixtures.js";

const TOKEN = "operator-token-for-the-invitation-page-test";
const PASSWORD = "a long enough password";

/** An invitation link that cannot be accepted, opened in the browser, names neither whom it was for nor the account. */
describe("dashboard invitation page", { skip: noChromium }, () => {
  let server: TestServer;
  let browser: Browser;
  let accountId: string;
  const admin = async (method: string, path: string, body?: unknown): Promise<Record<string, unknown>> => {
    const response = await fetch(`${server.url}/admin/api${path}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return response.status === 204 ? {} : ((await response.json()) as Record<string, unknown>);
  };
  const invite = async (email: string): Promise<string> => String((await admin("POST", `/accounts/${accountId}/invitations`, { email })).invite_path);
  const memberId = async (email: string): Promise<string> =>
    ((await admin("GET", `/accounts/${accountId}/members`)).data as Array<{ id: string; email: string }>).find((m) => m.email === email)!.id;

  /** Opens a link and waits for the page it draws. */
  async function open(path: string): Promise<Page> {
    const page = await browser.newPage();
    await page.goto(`${server.url}${path}`);
    await page.locator("main:not([aria-busy]) h1").waitFor();
    return page;
  }

  /** The page of a link that can no longer be used: it says so, offers sign-in, and tells nothing of the invitation. */
  async function tellsNothing(path: string, email: string, why: string): Promise<void> {
    const page = await open(path);
    try {
      assert.equal(await page.locator("main h1").textContent(), "Invitation not valid", why);
      assert.match((await page.getByTestId("invitation-state").textContent()) ?? "", /can no longer be used.*ask for a new one/, why);
      assert.equal(await page.getByLabel("New password").count(), 0, why);
      await page.getByRole("link", { name: "Go to sign-in" }).waitFor();
      const shown = await page.content();
      assert.ok(!shown.includes(email) && !shown.includes("@"), `${why}: the e-mail is not on the page`);
      assert.ok(!shown.includes("initrode"), `${why}: the account's name is not on the page`);
    } finally {
      await page.close();
    }
  }

  before(async () => {
    server = await startTestServer({}, { gated: true, env: { ALVEARE_ADMIN_TOKEN: TOKEN } });
    browser = await launchChromium();
    accountId = String((await admin("POST", "/accounts", { name: "initrode", plan: "starter" })).id);
  });
  after(async () => {
    await browser?.close();
    await server?.close();
  });

  it("a valid link names the account and e-mail and sets a password; once used it tells nothing", async () => {
    const path = await invite("milton@initrode.example");
    const page = await open(path);
    try {
      assert.equal(await page.locator("main h1").textContent(), "Set your password");
      await page.getByText("You are invited to join the account initrode as milton@initrode.example.").waitFor();
      await page.getByLabel("New password").fill(PASSWORD);
      await page.getByRole("button", { name: "Set password and sign in" }).click();
      await page.locator("main:not([aria-busy]) h1", { hasText: "API keys" }).waitFor();
      // Opened again while signed in: the way on is the dashboard, not sign-in (it offered "Go to sign-in").
      await page.goto(`${server.url}${path}`);
      await page.locator("main:not([aria-busy]) h1", { hasText: "Invitation not valid" }).waitFor();
      await page.getByText("You are signed in.", { exact: true }).waitFor();
      assert.equal(await page.getByRole("link", { name: "Go to sign-in" }).count(), 0);
      await page.getByRole("link", { name: "Go to your dashboard" }).click();
      await page.locator("main:not([aria-busy]) h1", { hasText: "API keys" }).waitFor();
    } finally {
      await page.close();
    }
    // Before: "This invitation has already been used", then the account's name and the e-mail.
    await tellsNothing(path, "milton@initrode.example", "used");
  });

  it("an expired link tells nothing", async () => {
    const path = await invite("late@initrode.example");
    const db = new Database(databasePath(server.config));
    db.prepare("UPDATE invitations SET expires_at = ? WHERE member_id = ?").run("2020-01-01T00:00:00.000Z", await memberId("late@initrode.example"));
    db.close();
    await tellsNothing(path, "late@initrode.example", "expired");
  });

  it("a revoked link (replaced by a newer one, or its member removed) tells nothing", async () => {
    const first = await invite("bob@initrode.example");
    const second = await invite("bob@initrode.example");
    await tellsNothing(first, "bob@initrode.example", "replaced");
    await admin("DELETE", `/accounts/${accountId}/members/${await memberId("bob@initrode.example")}`);
    await tellsNothing(second, "bob@initrode.example", "member removed");
  });
});
