import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import { launchChromium, noChromium } from "./helpers/browser.js";
import { postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";

const TOKEN = "operator-token-for-the-browser-test-7";
const ARTIFACTS = new URL("../../test-artifacts/dashboard/", import.meta.url).pathname;

describe("dashboard in a real browser", { skip: noChromium }, () => {
  let server: TestServer;
  let browser: Browser;
  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    server = await startTestServer({}, { gated: true, env: { ALVEARE_ADMIN_TOKEN: TOKEN } });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await server?.close();
  });

  const shot = (page: Page, name: string) => page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: true });

  it("operator invites a member, who makes a key, uses it, sees it counted, and revokes it", async () => {
    const operator = await browser.newPage();
    await operator.goto(`${server.url}/dashboard/`);
    await operator.getByLabel("Admin token").fill(TOKEN);
    await operator.getByRole("button", { name: "Sign in as operator" }).click();
    await operator.getByRole("heading", { name: "Accounts" }).waitFor();
    await shot(operator, "01-operator-signed-in");

    await operator.getByLabel("Name").fill("acme");
    await operator.getByLabel("Plan", { exact: true }).selectOption("starter");
    await operator.getByRole("button", { name: "Create account" }).click();
    await operator.getByText("acme").waitFor();
    await operator.getByLabel("Email").fill("dev@acme.example");
    await operator.getByRole("button", { name: "Invite" }).click();
    const inviteUrl = await operator.locator("#invite-url").textContent();
    assert.match(inviteUrl ?? "", /\/dashboard\/#invite=\w+$/);
    await shot(operator, "02-operator-invited-member");

    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.url });
    const member = await context.newPage();
    await member.goto(inviteUrl!);
    await member.getByLabel("New password").fill("a long enough password");
    await member.getByRole("button", { name: "Set password and sign in" }).click();
    await member.getByRole("heading", { name: "API keys" }).waitFor();
    assert.ok(!member.url().includes("invite="), "the invitation token leaves the address bar");
    await member.getByRole("button", { name: "Sign out" }).click();
    await member.getByRole("heading", { name: "Sign in" }).first().waitFor();
    await member.getByLabel("Email").fill("dev@acme.example");
    await member.getByLabel("Password").fill("a long enough password");
    await member.getByRole("button", { name: "Sign in", exact: true }).click();
    await member.getByRole("heading", { name: "API keys" }).waitFor();
    await shot(member, "03-member-signed-in");

    await member.getByLabel("Name").fill("production");
    await member.getByLabel("Mode").selectOption("live");
    await member.getByRole("button", { name: "Create key" }).click();
    const secret = (await member.locator("#secret-value").textContent()) ?? "";
    assert.match(secret, /^alv_live_[0-9A-Za-z]{40}$/);
    await member.getByRole("button", { name: "Copy" }).click();
    await member.getByText("Copied").waitFor();
    assert.equal(await member.evaluate("navigator.clipboard.readText()"), secret);
    await shot(member, "04-member-created-key");

    const ok = await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: "I love it", max_tokens: 4 }, { authorization: `Bearer ${secret}` });
    assert.equal(ok.status, 200);

    await member.goto(`${server.url}/dashboard/#usage`);
    await member.reload();
    const requests = member.getByTestId("live-requests");
    await requests.waitFor();
    assert.equal(await requests.textContent(), "1 / 100,000");
    await member.getByRole("cell", { name: "classify" }).waitFor();
    await shot(member, "05-member-usage");

    await member.goto(`${server.url}/dashboard/#keys`);
    member.once("dialog", (dialog) => void dialog.accept());
    await member.getByRole("button", { name: /^Revoke key alv_live_/ }).click();
    await member.getByText(/^revoked /).waitFor();
    await shot(member, "06-member-revoked-key");

    const refused = await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: "I love it" }, { authorization: `Bearer ${secret}` });
    assert.equal(refused.status, 401);
    assert.equal((refused.json.error as { code: string }).code, "revoked_api_key");

    await operator.reload();
    const seen = operator.getByTestId("usage-acme");
    await seen.waitFor();
    assert.match((await seen.textContent()) ?? "", /^1 \/ 100,000 · \d+ tokens$/, "the operator sees every account's usage");
    await shot(operator, "07-operator-sees-usage");

    await member.setViewportSize({ width: 375, height: 812 });
    await member.goto(`${server.url}/dashboard/#usage`);
    await member.getByTestId("live-requests").waitFor();
    await shot(member, "08-phone-width-usage");
    const overflow = await member.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1");
    assert.equal(overflow, false, "no horizontal scrolling at phone width");
    await context.close();
  });
});
