// An admin runs the system from the browser: adds a vendor company and approves it, adds a user
// of it who sets their own password with a link, deactivates that user while they have the board
// open (their session and live stream end at once), and changes a threshold.
import { expect, Page, test } from "@playwright/test";
import { psql } from "./db";
import { BoardPage, LoginPage, logInAs, snap } from "./pages";

/** Open a password link in `page`, set `password` with it, and land on the board. */
async function setPasswordWith(page: Page, link: string, password: string) {
  await page.goto(link);
  const form = page.getByTestId("set-password");
  await page.locator("#app[data-hydrated=true]").waitFor();
  await form.getByTestId("link-password").fill(password);
  await form.getByTestId("link-password-again").fill(password);
  await form.getByTestId("link-save").click();
  await expect(page).toHaveURL(/\/board$/);
}

test.beforeEach(({}, info) => test.skip(info.project.name !== "desktop", "runs on desktop"));

test("an admin adds and approves a vendor, adds its user, deactivates them live, and sets a threshold", async ({ browser, page }, info) => {
  await logInAs(page, "admin@turns.demo");
  await page.getByRole("link", { name: "Admin" }).click();
  await expect(page.getByRole("heading", { name: "Admin", level: 1 })).toBeVisible();
  await page.locator("#app[data-hydrated=true]").waitFor();

  await page.getByTestId("vendor-name").fill("Northside Glass");
  await page.getByTestId("vendor-trade").fill("Glazing");
  await page.getByTestId("add-vendor").click();
  const vendor = page.locator('[data-testid="vendor-row"][data-vendor="Northside Glass"]');
  await expect(vendor).toContainText("Waiting for approval");
  await vendor.getByTestId("approve-vendor").click();
  await expect(vendor).toContainText("Approved");
  expect(psql(`SELECT is_approved FROM vendors WHERE name = 'Northside Glass'`)).toBe("t");

  // A duplicate is refused by name, and nothing is written.
  await page.getByTestId("vendor-name").fill("Northside Glass");
  await page.getByTestId("add-vendor").click();
  await expect(page.getByTestId("admin-refused")).toContainText("Another vendor already has this name.");
  expect(psql(`SELECT count(*) FROM vendors WHERE name = 'Northside Glass'`)).toBe("1");

  await page.getByTestId("user-email").fill("glass.crew@example.com");
  await page.getByTestId("user-first").fill("Gil");
  await page.getByTestId("user-last").fill("Glass");
  await page.getByTestId("user-role-select").selectOption("VENDOR");
  await page.getByTestId("user-vendor").selectOption({ label: "Northside Glass" });
  await page.getByTestId("add-user").click();
  await expect(page.getByTestId("password-link")).toContainText("Give glass.crew@example.com this link");
  const link = (await page.getByTestId("link").textContent())!;
  expect(link).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/password\/[A-Za-z0-9_-]{43}$/);
  await expect(page.locator('[data-testid="user-row"][data-email="glass.crew@example.com"]')).toContainText("Active");
  await snap(page, info, "admin");

  // The new user opens it: the policy says why not, then their password is set and they are in,
  // with their (empty) board open. The link works once.
  const crewContext = await browser.newContext();
  const crew = await crewContext.newPage();
  await crew.goto(link);
  await crew.locator("#app[data-hydrated=true]").waitFor();
  await expect(crew.getByTestId("set-password")).toContainText("For glass.crew@example.com.");
  await crew.getByTestId("link-password").fill("glass crew");
  await crew.getByTestId("link-password-again").fill("glass crew");
  await crew.getByTestId("link-save").click();
  await expect(crew.getByRole("alert")).toContainText("at least 12 characters");
  const password = "panes of northside glass";
  await setPasswordWith(crew, link, password);
  await new BoardPage(crew).live();
  const spent = await browser.newContext();
  const again = await spent.newPage();
  const res = await again.goto(link);
  expect(res?.status()).toBe(400);
  await expect(again.getByTestId("link-gone")).toContainText("expired or was already used");
  await spent.close();

  // Deactivated: their open board says the session ended, without a reload.
  const row = page.locator('[data-testid="user-row"][data-email="glass.crew@example.com"]');
  await row.getByTestId("deactivate-user").click();
  await expect(row).toContainText("Deactivated");
  await expect(crew.getByTestId("session-notice")).toBeVisible({ timeout: 20_000 });
  expect(psql(`SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.email = 'glass.crew@example.com'`)).toBe("0");

  // Thresholds: refused out of order, saved in order, audited.
  await page.getByTestId("pm-limit").fill("9000");
  await page.getByTestId("save-thresholds").click();
  await expect(page.getByTestId("admin-refused")).toContainText("cannot be above the head-office threshold");
  // (999: no other test's amount lies between it and the default 1,000.)
  await page.getByTestId("pm-limit").fill("999");
  await page.getByTestId("save-thresholds").click();
  await expect(page.getByTestId("admin-saved")).toBeVisible();
  expect(psql(`SELECT pm_self_approve_limit FROM approval_thresholds`)).toBe("999.00");
  expect(psql(`SELECT count(*) FROM audit_logs WHERE action IN ('create_vendor', 'set_vendor', 'create_user', 'set_user_active', 'set_thresholds')`))
    .toBe("5");
  // Put back for the other tests.
  psql("UPDATE approval_thresholds SET pm_self_approve_limit = 1000");

  // Back again, with a new link (once it is used, the old password stops working).
  await row.getByTestId("reactivate-user").click();
  await expect(row).toContainText("Active");
  await row.getByTestId("reset-password").click();
  await expect(page.getByTestId("link")).not.toHaveText(link);
  const reset = (await page.getByTestId("link").textContent())!;
  expect(psql(`SELECT count(*) FROM audit_logs a JOIN users u ON u.id = a.row_id
               WHERE a.action = 'password_link' AND u.email = 'glass.crew@example.com'`)).toBe("2");
  // Opened on the crew's phone, where the app's service worker runs: the link's page is not
  // kept in its cache (the URL is a credential).
  await setPasswordWith(crew, reset, "a new pane of glass");
  const kept = () => crew.evaluate(async () => {
    const urls: string[] = [];
    for (const name of await caches.keys()) {
      for (const r of await (await caches.open(name)).keys()) urls.push(new URL(r.url).pathname);
    }
    return urls;
  });
  await expect.poll(kept).toContain("/board");
  expect((await kept()).filter((u) => u.startsWith("/password/"))).toEqual([]);
  await crewContext.close();
  const elsewhere = await browser.newContext();
  const login = new LoginPage(await elsewhere.newPage());
  await login.open();
  await login.logIn("glass.crew@example.com", password);
  await expect(login.message()).toHaveText("Wrong email or password.");
  await elsewhere.close();
});

test("only admins have the admin page", async ({ page }) => {
  await logInAs(page, "pm@turns.demo");
  await expect(page.getByRole("link", { name: "Admin" })).toHaveCount(0);
  const res = await page.goto("/admin");
  expect(res?.status()).toBe(403);
});

test("a user changes their password: the policy says why not, then their other device is logged out", async ({ browser, page }, info) => {
  const email = "superadmin@turns.demo";
  const other = await browser.newContext();
  const phone = await other.newPage();
  const board = await logInAs(phone, email);
  await board.synced();

  await logInAs(page, email);
  await page.getByTestId("user-name").click();
  await expect(page.getByRole("heading", { name: "Your account" })).toBeVisible();
  await page.locator("#app[data-hydrated=true]").waitFor();
  await expect(page.getByTestId("session")).toHaveCount(2);
  await expect(page.getByTestId("session").filter({ hasText: "this device" })).toHaveCount(1);

  const form = page.getByTestId("change-password");
  await form.getByTestId("current-password").fill("turns-demo");
  await form.getByTestId("new-password").fill("password1234");
  await form.getByTestId("new-password-again").fill("password1234");
  await form.getByTestId("save-password").click();
  await expect(page.getByRole("alert")).toContainText("most common");
  await form.getByTestId("new-password").fill("blue tablets in the rain");
  await form.getByTestId("new-password-again").fill("blue tablets in the rain");
  await form.getByTestId("save-password").click();
  await expect(page.getByTestId("account-saved")).toHaveText("Password changed. Your other devices are logged out.");
  await expect(page.getByTestId("session")).toHaveCount(1);
  await snap(page, info, "account");
  // The phone's open board learns at once that its session is over.
  await expect(phone.getByTestId("session-notice")).toBeVisible({ timeout: 20_000 });
  await other.close();

  // The new password logs in; the old one no longer does.
  await new BoardPage(page).logOut();
  const login = new LoginPage(page);
  await login.open();
  await login.logIn(email, "turns-demo");
  await expect(login.message()).toHaveText("Wrong email or password.");
  await login.logIn(email, "blue tablets in the rain");
  await expect(page).toHaveURL(/\/board$/);
  // Put back for a rerun.
  psql(`UPDATE user_credentials SET password_hash = (SELECT c.password_hash FROM user_credentials c JOIN users u ON u.id = c.user_id
         WHERE u.email = 'admin@turns.demo') WHERE user_id = (SELECT id FROM users WHERE email = '${email}')`);
});

test("an admin recolours a stage and an open board follows without a reload", async ({ browser, page }) => {
  // (Renaming and reordering are covered by the server's tests: the other tests here lean on the
  // stages' names and order while they run.)
  const pm = await browser.newContext();
  const pmPage = await pm.newPage();
  const board = await logInAs(pmPage, "pm@turns.demo");
  await board.synced();
  await logInAs(page, "admin@turns.demo");
  await page.goto("/admin");
  await page.locator("#app[data-hydrated=true]").waitFor();
  const stage = page.locator('[data-testid="stage-row"][data-stage="Notice"]');
  const was = await stage.getByTestId("stage-color").inputValue();
  await stage.getByTestId("stage-color").fill("#aa3377");
  await stage.getByTestId("save-stage").click();
  await expect(page.getByTestId("admin-saved")).toBeVisible();
  await expect(board.column("Notice")).toHaveAttribute("style", /#aa3377/);
  expect(psql(`SELECT count(*) FROM audit_logs WHERE action = 'edit_stage'`)).toBe("1");
  // Put back.
  await stage.getByTestId("stage-color").fill(was);
  await stage.getByTestId("save-stage").click();
  await expect(board.column("Notice")).toHaveAttribute("style", new RegExp(was));
  await pm.close();
});
