import assert from "node:assert/strict";
import Database from "better-sqlite3";
import { after, before, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import { databasePath } from "../src/config/config.js";
import { adminPoster, invitedMember, launchChromium, noChromium } from "./helpers/browser.js";
import { startTestServer, type TestServer } from "./helpers/fixtures.js";

const TOKEN = "operator-token-for-the-unserved-plan-test";
const PASSWORD = "a long enough password";

describe("an account on a plan the server no longer serves, in the dashboard", { skip: noChromium }, () => {
  let server: TestServer;
  let browser: Browser;
  let member: Page;
  let accountId: string;
  before(async () => {
    server = await startTestServer({}, { gated: true, env: { ALVEARE_ADMIN_TOKEN: TOKEN } });
    browser = await launchChromium();
    const admin = adminPoster(server.url, TOKEN);
    accountId = String((await admin("/accounts", { name: "orphan", plan: "starter" })).id);
    member = await invitedMember(browser, server.url, admin, accountId, "dev@orphan.example", PASSWORD);
    // As after a config change that removed the plan while the account was on it.
    const db = new Database(databasePath(server.config));
    db.prepare("UPDATE accounts SET plan = 'retired' WHERE id = ?").run(accountId);
    db.close();
  });
  after(async () => {
    await browser?.close();
    await server?.close();
  });

  it("shows the member their plan and usage pages, saying why their keys are refused", async () => {
    // Both pages were "Something went wrong".
    await member.goto(`${server.url}/dashboard/#plan`);
    await member.getByRole("heading", { name: "Plan: retired" }).waitFor();
    assert.match((await member.getByTestId("plan-not-served").textContent()) ?? "", /no longer serves your account's plan.*Ask the operator/);
    await member.goto(`${server.url}/dashboard/#usage`);
    await member.getByTestId("live-requests").waitFor();
    assert.equal(await member.getByRole("heading", { name: "Something went wrong" }).count(), 0);
  });

  it("shows the operator the account with a notice and the plan control, and moving it ends the notice", async () => {
    const operator = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await operator.goto(`${server.url}/dashboard/#account=${accountId}`);
    await operator.getByLabel("Admin token").fill(TOKEN);
    await operator.getByRole("button", { name: "Sign in as operator" }).click();
    // It was "Something went wrong", with no way to move the account from the dashboard.
    await operator.getByRole("heading", { name: "Account orphan" }).waitFor();
    assert.match((await operator.getByTestId("plan-not-served").textContent()) ?? "", /'retired' is not one this server serves.*keys are refused/);
    const select = operator.getByLabel("Plan", { exact: true });
    assert.equal(await select.inputValue(), "retired", "the account's own plan is the one shown, not the first served one");
    assert.equal(await select.locator("option:checked").textContent(), "retired (not served)");
    assert.match((await operator.getByTestId("account-usage").textContent()) ?? "", /^0 \/ 0 requests/);
    assert.equal(await operator.locator("#account-quota").textContent(), "Monthly quota: none (0 requests used)", "no bar of a maximum of 0");
    await select.selectOption("starter");
    await operator.getByRole("button", { name: "Change plan" }).click();
    await operator.getByRole("dialog").getByRole("button", { name: "Change to starter" }).click();
    await operator.getByText("Plan changed to starter").waitFor();
    await operator.getByTestId("plan-not-served").waitFor({ state: "detached" });
    assert.match((await operator.getByTestId("account-usage").textContent()) ?? "", /^0 \/ 100,000 requests/);
    await operator.close();
  });
});
