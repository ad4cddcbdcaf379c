import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import Database from "better-sqlite3";
import { after, before, describe, it } from "node:test";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { databasePath } from "../src/server/server.js";
import { launchChromium, noChromium } from "./helpers/browser.js";
import { postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";
import { auditPage, nonTextContrast, watchCsp } from "./helpers/page-audit.js";

const TOKEN = "operator-token-for-the-browser-test-7";
const ARTIFACTS = new URL("../../test-artifacts/dashboard/", import.meta.url).pathname;
const PASSWORD = "a long enough password";

describe("dashboard in a real browser", { skip: noChromium }, () => {
  let server: TestServer;
  let browser: Browser;
  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    // A plan of the config's own, beside the defaults: the dashboard must offer it.
    server = await startTestServer(
      { plans: { team: { requests_per_minute: 600, requests_per_month: 300_000, specialists: "*" } } },
      { gated: true, env: { ALVEARE_ADMIN_TOKEN: TOKEN } },
    );
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await server?.close();
  });

  const audit = (page: Page, name: string) => auditPage(page, name, ARTIFACTS);
  const clipboardContext = async (): Promise<BrowserContext> => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.url });
    return context;
  };

  it("without ALVEARE_ADMIN_TOKEN the sign-in page hides the operator form and says how to turn it on", async () => {
    const plain = await startTestServer({}, { gated: true });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      await page.goto(`${plain.url}/dashboard/`);
      const notice = page.getByTestId("operator-off");
      await notice.waitFor();
      assert.match((await notice.textContent()) ?? "", /turned off.*ALVEARE_ADMIN_TOKEN.*at least 32 characters/s);
      // The example must leave the operator knowing the token it generates, or they cannot sign in with it.
      assert.match((await notice.textContent()) ?? "", /export ALVEARE_ADMIN_TOKEN="\$\(openssl rand -hex 32\)"\s*echo "\$ALVEARE_ADMIN_TOKEN"/);
      assert.equal(await page.getByLabel("Admin token").count(), 0, "no operator form that could only fail");
      await audit(page, "00-sign-in-operator-off");
      await page.close();
    } finally {
      await plain.close();
    }
  });

  it("operator invites a member, who makes a key, uses it, sees it counted, and revokes it; the operator manages the account", async () => {
    const operatorContext = await clipboardContext();
    const operator = await operatorContext.newPage();
    const operatorCsp = watchCsp(operator);
    const missing: string[] = [];
    operator.on("response", (response) => {
      if (response.status() === 404) missing.push(new URL(response.url()).pathname);
    });
    const consoleErrors: string[] = [];
    operator.on("console", (message) => {
      if (message.type() === "error") consoleErrors.push(`${message.text()} (${message.location().url})`);
    });
    // A browser opening the server's own address lands on the dashboard.
    await operator.goto(`${server.url}/`);
    assert.equal(new URL(operator.url()).pathname, "/dashboard/");
    await operator.getByLabel("Admin token").waitFor();
    // First contact looks sound: no failed request (a 401 for the session read, a 404 for an icon) in the console.
    assert.deepEqual(consoleErrors, [], "a signed-out page load logs no console error");
    await audit(operator, "01-sign-in");
    for (const [part, ratio] of Object.entries(await nonTextContrast(operator))) assert.ok(ratio >= 3, `${part} contrast ${ratio}:1 is at least 3:1`);
    await operator.getByLabel("Admin token").fill(TOKEN);
    await operator.getByRole("button", { name: "Sign in as operator" }).click();
    await operator.getByRole("heading", { name: "Accounts" }).waitFor();
    await operator.getByText(/No accounts yet/).waitFor();
    // The server's plans, its config's own included (a fixed list of the four defaults offered no custom plan).
    assert.deepEqual(await operator.getByLabel("Plan", { exact: true }).locator("option").allTextContents(), [
      "solo",
      "starter",
      "team",
      "professional",
      "scale",
    ]);
    await audit(operator, "02-operator-no-accounts");

    await operator.getByLabel("Name").fill("acme");
    await operator.getByLabel("Plan", { exact: true }).selectOption("starter");
    await operator.getByRole("button", { name: "Create account" }).click();
    await operator.getByRole("link", { name: "acme" }).waitFor();
    assert.equal(await operator.locator("#status").textContent(), "Account acme created");
    await audit(operator, "03-operator-accounts");

    await operator.getByRole("link", { name: "acme" }).click();
    await operator.getByRole("heading", { name: "Account acme" }).waitFor();
    // A notice belongs to the page it was said on: it used to float over the next page's table for seconds.
    assert.equal(await operator.locator("#status").textContent(), "");
    await operator.getByText("No keys yet.").waitFor();
    await operator.getByText("No members yet.").waitFor();
    await audit(operator, "04-operator-account-empty");

    await operator.getByLabel("Email").fill("dev@acme.example");
    await operator.getByRole("button", { name: "Invite" }).click();
    const inviteUrl = (await operator.locator("#invite-url").textContent()) ?? "";
    assert.match(inviteUrl, /\/dashboard\/#invite=\w+$/);
    const invitation = (await operator.locator("#invitation").textContent()) ?? "";
    assert.match(invitation, /Invitation for dev@acme\.example to join acme/);
    assert.match(invitation, /expires in 7 days/);
    await operator.getByRole("button", { name: "Copy the invitation link" }).click();
    assert.equal(await operator.evaluate("navigator.clipboard.readText()"), inviteUrl);
    await operator.getByRole("cell", { name: "invited" }).waitFor();
    await audit(operator, "05-operator-invited-member");

    // Inviting the same person again asks first; cancelling sends nothing.
    await operator.getByLabel("Email").fill("dev@acme.example");
    await operator.getByRole("button", { name: "Invite" }).click();
    const reinvite = operator.getByRole("dialog");
    await reinvite.getByText("dev@acme.example is already a member of acme").waitFor();
    await reinvite.getByText(/not accepted their last invitation/).waitFor();
    await reinvite.getByRole("button", { name: "Cancel" }).click();
    await reinvite.waitFor({ state: "detached" });

    const context = await clipboardContext();
    const member = await context.newPage();
    const memberCsp = watchCsp(member);
    await member.goto(inviteUrl);
    await member.getByText("You are invited to join the account acme as dev@acme.example.").waitFor();
    assert.match((await member.getByTestId("invitation-expiry").textContent()) ?? "", /expires in 7 days/);
    await audit(member, "06-invitation");
    // The policy's refusal in words for a person, not the API's "Invalid 'password': …".
    await member.getByLabel("New password").fill("hunter2hunter2");
    await member.getByRole("button", { name: "Set password and sign in" }).click();
    await member.getByText("The password is one short piece repeated (as in 'hunter2hunter2'); choose a longer phrase.").waitFor();
    await member.getByLabel("New password").fill(PASSWORD);
    await member.getByRole("button", { name: "Set password and sign in" }).click();
    await member.getByRole("heading", { name: "API keys" }).waitFor();
    assert.ok(!member.url().includes("invite="), "the invitation token leaves the address bar");
    await member.getByText(/^No keys yet/).waitFor();
    await audit(member, "07-member-no-keys");
    await member.getByRole("button", { name: "Sign out" }).click();
    await member.getByRole("heading", { name: "Sign in" }).first().waitFor();
    await member.getByLabel("Email").fill("dev@acme.example");
    await member.getByLabel("Password").fill(PASSWORD);
    await member.getByRole("button", { name: "Sign in", exact: true }).click();
    await member.getByRole("heading", { name: "API keys" }).waitFor();

    // A used invitation says it can no longer be used as soon as it is opened, before any password is typed, and
    // names neither the account nor whom it was for.
    const reopened = await context.newPage();
    await reopened.goto(inviteUrl);
    await reopened.getByTestId("invitation-state").waitFor();
    assert.match((await reopened.getByTestId("invitation-state").textContent()) ?? "", /can no longer be used/);
    assert.doesNotMatch((await reopened.locator("main").textContent()) ?? "", /dev@acme\.example|acme/);
    assert.equal(await reopened.getByLabel("New password").count(), 0);
    await audit(reopened, "08-invitation-used");
    await reopened.close();

    await member.getByLabel("Name").fill("production");
    await member.getByLabel("Mode").selectOption("live");
    await member.getByRole("button", { name: "Create key" }).click();
    const secret = (await member.locator("#secret-value").textContent()) ?? "";
    assert.match(secret, /^alv_live_[0-9A-Za-z]{40}$/);
    await member.getByRole("button", { name: "Copy the new key" }).click();
    await member.getByText("Copied").waitFor();
    assert.equal(await member.evaluate("navigator.clipboard.readText()"), secret);
    await member.getByLabel("Name").fill("staging");
    await member.getByRole("button", { name: "Create key" }).click();
    await member.getByRole("cell", { name: "staging", exact: true }).waitFor();
    await member
      .getByRole("row", { name: /staging/ })
      .getByRole("cell", { name: "you", exact: true })
      .waitFor();
    // A double click creates one key, not two of which only one secret is ever shown.
    await member.getByLabel("Name").fill("twice");
    await member.getByRole("button", { name: "Create key" }).dblclick();
    await member.getByRole("cell", { name: "twice", exact: true }).first().waitFor();
    await member.waitForTimeout(500);
    assert.equal(await member.getByRole("cell", { name: "twice", exact: true }).count(), 1);
    await audit(member, "09-member-keys");

    const ok = await postJson(
      `${server.url}/v1/infer`,
      { specialist: "classify", prompt: "I love it", max_tokens: 4 },
      { authorization: `Bearer ${secret}` },
    );
    assert.equal(ok.status, 200);
    const outsidePlan = await postJson(
      `${server.url}/v1/infer`,
      { specialist: "code", prompt: "x", max_tokens: 4 },
      { authorization: `Bearer ${secret}` },
    );
    assert.equal(outsidePlan.status, 403);

    await member.goto(`${server.url}/dashboard/#usage`);
    await member.reload();
    const requests = member.getByTestId("live-requests");
    await requests.waitFor();
    assert.equal(await requests.textContent(), "1 / 100,000");
    await member.getByRole("cell", { name: "classify" }).waitFor();
    assert.equal(await member.locator("#live-quota").getAttribute("value"), "1");
    assert.equal(await member.locator("#live-quota").getAttribute("max"), "100000");
    const byKey = member.getByRole("row", { name: /production/ });
    assert.match((await byKey.textContent()) ?? "", /production \(alv_live_\w+…\)2\d+/, "the key's requests (the refused one too) and tokens");
    const byStatus = (await member.getByTestId("live-by-status").textContent()) ?? "";
    assert.match(byStatus, /2xx answered1/);
    assert.match(byStatus, /4xx refused \(e\.g\. not in plan\)1/);
    assert.match(byStatus, /499 client left \(counted\)0/);
    assert.match(byStatus, /429 over a limit0/);
    // The charts are Chart.js's, with dated axes and tooltips.
    const today = new Date().toLocaleDateString("en", { month: "short", day: "numeric", timeZone: "UTC" });
    const labels = (await member.evaluate("Chart.getChart('live-requests-chart').data.labels")) as string[];
    assert.ok(labels.includes(today), `the x axis has dates, today (${today}) among them`);
    assert.deepEqual(await member.evaluate("Chart.getChart('live-tokens-chart').options.scales.y.title.text"), "Tokens");
    const bar = (await member.evaluate(`(() => {
      const chart = Chart.getChart('live-requests-chart');
      const index = chart.data.labels.indexOf(${JSON.stringify(today)});
      const el = chart.getDatasetMeta(0).data[index];
      const box = chart.canvas.getBoundingClientRect();
      return { x: box.left + el.x, y: box.top + (el.y + el.base) / 2 - 1 };
    })()`)) as { x: number; y: number };
    await member.mouse.move(bar.x, bar.y);
    await member.waitForFunction("Chart.getChart('live-requests-chart').tooltip.getActiveElements().length === 1");
    assert.match((await member.evaluate("Chart.getChart('live-requests-chart').tooltip.body[0].lines[0]")) as string, /^1 request$/);
    await audit(member, "10-member-usage");

    await member.goto(`${server.url}/dashboard/#plan`);
    await member.getByRole("heading", { name: "Plan: starter" }).waitFor();
    await audit(member, "11-member-plan");

    // The member's activity: this account's audit records, the member's own key among them.
    await member.getByRole("link", { name: "Activity" }).click();
    await member.getByRole("heading", { name: "Activity" }).waitFor();
    await member
      .getByRole("row", { name: /key\.created/ })
      .first()
      .waitFor();
    await member.getByRole("row", { name: /member\.joined/ }).waitFor();
    assert.equal(await member.getByRole("row", { name: /operator\.signed_in/ }).count(), 0, "server-wide records are the operator's only");
    await audit(member, "11b-member-activity");

    // Revoking asks in the page, naming the key; a failure is shown, not swallowed.
    await member.goto(`${server.url}/dashboard/#keys`);
    await member.getByRole("button", { name: /^Revoke key “production”/ }).click();
    const dialog = member.getByRole("dialog");
    await dialog.getByRole("heading", { name: /^Revoke key “production” \(alv_live_\w+…\)\?$/ }).waitFor();
    await audit(member, "12-member-revoke-confirmation");
    await member.route("**/dashboard/api/keys/*/revoke", (route) =>
      route.fulfill({
        status: 503,
        contentType: "application/json",
        body: JSON.stringify({
          error: { message: "The server is shutting down; try again.", type: "server_error", code: "unavailable", param: null },
        }),
      }),
    );
    await dialog.getByRole("button", { name: "Revoke key" }).click();
    await dialog.getByRole("alert").getByText("The server is shutting down; try again.").waitFor();
    await member.unroute("**/dashboard/api/keys/*/revoke");
    await dialog.getByRole("button", { name: "Revoke key" }).click();
    await dialog.waitFor({ state: "detached" });
    await member.getByText(/^revoked /).waitFor();

    const refused = await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: "I love it" }, { authorization: `Bearer ${secret}` });
    assert.equal(refused.status, 401);
    assert.equal((refused.json.error as { code: string }).code, "revoked_api_key");

    await operator.goto(`${server.url}/dashboard/#admin`);
    await operator.reload();
    const seen = operator.getByTestId("usage-acme");
    await seen.waitFor();
    assert.match((await seen.textContent()) ?? "", /^1 \/ 100,000 · \d+ tokens$/, "the operator sees every account's usage");

    // The operator's account page: keys (revocable), members, usage and status.
    await operator.getByRole("link", { name: "acme" }).click();
    await operator.getByRole("heading", { name: "Account acme" }).waitFor();
    assert.match((await operator.getByTestId("account-usage").textContent()) ?? "", /^1 \/ 100,000 requests · \d+ tokens$/);
    assert.match((await operator.getByTestId("account-by-status").textContent()) ?? "", /2xx answered1/);
    const membersTable = operator.getByRole("region", { name: "Members" });
    await membersTable
      .getByRole("row", { name: /dev@acme\.example/ })
      .getByText("active")
      .waitFor();
    // The keys table names who made each key.
    await operator
      .getByRole("region", { name: "Keys" })
      .getByRole("row", { name: /staging/ })
      .getByRole("cell", { name: "dev@acme.example", exact: true })
      .waitFor();
    await operator
      .getByRole("row", { name: /production/ })
      .getByText(/^revoked /)
      .waitFor();
    await audit(operator, "13-operator-account");
    // The account id in the page's address is one path segment: a crafted link cannot steer the page's calls elsewhere.
    const acmeHash = new URL(operator.url()).hash;
    await operator.goto(`${server.url}/dashboard/#account=acct_nosuch%2F..%2F${acmeHash.slice("#account=".length)}`);
    await operator.getByRole("heading", { name: "Not found" }).waitFor();
    await operator.goto(`${server.url}/dashboard/${acmeHash}`);
    await operator.getByRole("heading", { name: "Account acme" }).waitFor();
    await operator.getByRole("button", { name: /^Revoke key “staging”/ }).click();
    await operator
      .getByRole("dialog")
      .getByRole("heading", { name: /^Revoke key “staging”/ })
      .waitFor();
    await operator.getByRole("dialog").getByRole("button", { name: "Revoke key" }).click();
    await operator
      .getByRole("row", { name: /staging/ })
      .getByText(/^revoked /)
      .waitFor();

    // Re-inviting someone who has set a password warns that the link can replace it.
    await operator.getByLabel("Email").fill("Dev@acme.example");
    await operator.getByRole("button", { name: "Invite" }).click();
    await operator
      .getByRole("dialog")
      .getByText(/already set a password/)
      .waitFor();
    await operator.getByRole("dialog").getByRole("button", { name: "Cancel" }).click();

    // A plan change is confirmed in the page, naming the plan; nothing changes before that.
    await operator.getByLabel("Plan", { exact: true }).selectOption("professional");
    await operator.getByRole("button", { name: "Change plan" }).click();
    const planDialog = operator.getByRole("dialog");
    await planDialog.getByRole("heading", { name: "Change acme to the professional plan?" }).waitFor();
    await planDialog.getByText(/from starter to professional/).waitFor();
    await audit(operator, "14-operator-plan-confirmation");
    await planDialog.getByRole("button", { name: "Change to professional" }).click();
    await operator.getByText(/· plan professional ·/).waitFor();

    await operator.getByRole("button", { name: "Suspend account" }).click();
    await operator.getByRole("dialog").getByRole("heading", { name: "Suspend acme?" }).waitFor();
    await operator.getByRole("dialog").getByRole("button", { name: "Suspend acme" }).click();
    await operator.getByRole("button", { name: "Reactivate account" }).waitFor();
    assert.equal(await operator.getByTestId("account-status").textContent(), "suspended");
    await operator.getByText("acme suspended: its keys are refused").waitFor();
    // The member learns it on the next page they open, with the plan the operator set since their sign-in.
    await member.getByRole("link", { name: "Plan" }).click();
    await member.getByTestId("suspended-banner").waitFor();
    // A page opens at its top, the navigation in view, with focus on its content for screen readers.
    assert.deepEqual(await member.evaluate("[window.scrollY, document.activeElement?.id]"), [0, "main"]);
    // Its TypeScript examples say where the SDK comes from (it is not on npm) and what works without it.
    assert.match(
      (await member.getByLabel("TypeScript example for classify").textContent())!,
      /^\/\/ npm install <the @alveare\/sdk package .*\n\/\/ with OpenAI's own SDK \(npm install openai/,
    );
    await member.getByRole("link", { name: "Keys" }).click();
    await member.getByText(/· plan professional$/).waitFor();
    await member.getByTestId("suspended-banner").waitFor();

    // The operator's audit log, filtered to one action.
    await operator.getByRole("link", { name: "Audit" }).click();
    await operator.getByRole("heading", { name: "Audit log" }).waitFor();
    await operator
      .getByRole("row", { name: /operator\.signed_in/ })
      .first()
      .waitFor();
    await operator.getByLabel("Action").selectOption("account.suspended");
    await operator.getByRole("button", { name: "Filter" }).click();
    // The unfiltered table already shows the suspension: wait for the filtered one to replace it (its sign-in rows gone).
    await operator
      .getByRole("row", { name: /operator\.signed_in/ })
      .first()
      .waitFor({ state: "detached" });
    await operator.getByRole("row", { name: /account\.suspended/ }).waitFor();
    assert.equal(await operator.getByRole("row", { name: /operator\.signed_in/ }).count(), 0);
    await audit(operator, "14b-operator-audit");
    await operator.getByRole("link", { name: "Accounts" }).click();
    await operator.getByRole("link", { name: "acme" }).click();
    await operator.getByRole("button", { name: "Reactivate account" }).waitFor();

    // A session that ends (here: its cookie is gone) sends the page to sign-in, saying why.
    await context.clearCookies();
    await member.getByRole("link", { name: "Usage" }).click();
    await member.getByText("Your session has expired or was signed out. Sign in again to go on.").waitFor();
    await audit(member, "15-session-expired");

    // An expired invitation is reported on open as well.
    await operator.getByRole("button", { name: "Reactivate account" }).click();
    await operator.getByRole("dialog").getByRole("button", { name: "Reactivate acme" }).click();
    await operator.getByRole("button", { name: "Suspend account" }).waitFor();
    await operator.getByLabel("Email").fill("late@acme.example");
    await operator.getByRole("button", { name: "Invite" }).click();
    const lateUrl = (await operator.locator("#invite-url").textContent()) ?? "";
    const db = new Database(databasePath(server.config));
    db.prepare("UPDATE invitations SET expires_at = ? WHERE member_id = (SELECT id FROM members WHERE email = ?)").run(
      "2020-01-01T00:00:00.000Z",
      "late@acme.example",
    );
    db.close();
    const late = await context.newPage();
    await late.goto(lateUrl);
    assert.match((await late.getByTestId("invitation-state").textContent()) ?? "", /can no longer be used/);
    assert.doesNotMatch((await late.locator("main").textContent()) ?? "", /late@acme\.example|acme/);
    await late.close();

    // A member who made keys: the dialog says they go with them, and offers to keep them.
    await operator.getByRole("button", { name: "Remove member dev@acme.example" }).click();
    const devRemoval = operator.getByRole("dialog");
    await devRemoval.getByRole("heading", { name: "Remove dev@acme.example from acme?" }).waitFor();
    assert.match((await devRemoval.textContent()) ?? "", /The (\d+ )?API keys? they created (is|are) revoked with them/);
    await devRemoval.getByRole("checkbox", { name: /Keep the keys they created working/ }).waitFor();
    await devRemoval.getByRole("button", { name: "Cancel" }).click();

    // Removing a member is confirmed in the page, naming them; their row goes, and so does their session.
    await operator.getByRole("button", { name: "Remove member late@acme.example" }).click();
    const removal = operator.getByRole("dialog");
    await removal.getByRole("heading", { name: "Remove late@acme.example from acme?" }).waitFor();
    assert.match((await removal.textContent()) ?? "", /They created no API key that still works\./, "the dialog says what happens to their keys");
    await removal.getByRole("button", { name: "Remove member" }).click();
    await membersTable.getByRole("row", { name: /late@acme\.example/ }).waitFor({ state: "detached" });
    await membersTable.getByRole("row", { name: /dev@acme\.example/ }).waitFor();

    assert.deepEqual([...operatorCsp, ...memberCsp], [], "nothing the pages do is blocked by their CSP");
    assert.deepEqual(
      missing.filter((path) => !path.includes("/acct_nosuch")),
      [],
      "no page asks for something the server does not have (but the crafted link's account)",
    );
    assert.ok(
      missing.every((path) => !path.includes("/acct_nosuch") || path.startsWith("/admin/api/accounts/acct_nosuch%2F..%2F")),
      "the crafted link's id stayed one segment",
    );
    await context.close();
    await operatorContext.close();
  });
});
