// Each role logs in and sees exactly its scope, at phone, tablet and desktop sizes (the three
// Playwright projects), on the release build with the demo data.
import { expect, test } from "@playwright/test";
import { psql } from "./db";
import { BoardPage, LoginPage, PropertiesPage, QueuePage, logInAs, snap } from "./pages";

test("a property manager sees their own turns and properties", async ({ page }, info) => {
  const board = await logInAs(page, "pm@turns.demo");
  await expect(board.heading()).toHaveText("Turn board");
  await expect(page.getByTestId("user-role")).toHaveText("Property manager");
  await expect(board.cards().first()).toBeVisible();
  // Columns are the active stages, in display order.
  const stages = await page.locator("section.column .stage-name").allTextContents();
  expect(stages).toEqual([
    "Notice", "Move-out inspection", "Scope & bid", "Approval", "In progress", "QC inspection", "Rent ready",
  ]);
  await expect(page.getByTestId("overdue").first()).toBeVisible();
  await snap(page, info, "pm-board");

  const properties = new PropertiesPage(page);
  await properties.open();
  await expect(properties.rows()).toHaveCount(15);
  const managers = await properties.rows().locator('td[data-label="PM"]').allTextContents();
  expect(new Set(managers)).toEqual(new Set(["Pat Morgan"]));
  await snap(page, info, "pm-properties");
});

test("a vendor sees only their company's work orders, without scope amounts", async ({ page }, info) => {
  const board = await logInAs(page, "vendor@turns.demo");
  await expect(board.heading()).toHaveText("My work orders");
  const vendors = await board.cards().locator(".vendor").allTextContents();
  expect(vendors.length).toBeGreaterThan(0);
  expect(new Set(vendors)).toEqual(new Set(["Brightline Painting"]));
  await expect(page.getByTestId("approval-status")).toHaveCount(0);
  await expect(page.getByTestId("filter-vendor")).toHaveCount(0);
  await snap(page, info, "vendor-board");
});

test("a DFO approver's board is the queue of turns waiting for DFO approval", async ({ page }, info) => {
  const board = await logInAs(page, "dfo@turns.demo");
  await expect(board.heading()).toHaveText("Approval queue");
  const queue = new QueuePage(page);
  await expect(queue.items().first()).toBeVisible();
  // The demo's turns (other tests add and decide their own meanwhile): all of those waiting for
  // the DFO, oldest request first (ties: the longer vacant first), and nothing else.
  const rows = await queue.items().evaluateAll((rows) => rows.map((r) => r.getAttribute("data-turn") ?? ""));
  const shown = rows.filter((t) => t.startsWith("T-"));
  const waiting = psql(`SELECT string_agg(turn_id, ',' ORDER BY awaiting_since::date, move_out_date, turn_id) FROM turns
                         WHERE is_active AND approval_status = 'DFO_APPROVAL_NEEDED' AND turn_id LIKE 'T-%'`).split(",");
  expect(shown.length).toBeGreaterThan(0);
  expect(shown).toEqual(waiting);
  await snap(page, info, "dfo-board");
});

test("filters work in the browser after hydration, without a round trip", async ({ page }) => {
  // srpm2 oversees pm3 only: the local-first tests add turns to pm's homes while this runs.
  const board = await logInAs(page, "srpm2@turns.demo");
  await board.hydrated();
  const total = await board.cards().count();
  expect(total).toBeGreaterThan(1);
  const first = (await board.cards().first().getAttribute("data-turn"))!;
  let requests = 0;
  // The sync stream keeps polling in the background; filtering itself must not ask the server.
  page.on("request", (r) => { if (!new URL(r.url()).pathname.startsWith("/api/shapes")) requests++; });
  await board.search().fill(first);
  await expect(board.cards()).toHaveCount(1);
  await expect(board.cards().first()).toHaveAttribute("data-turn", first);
  await expect(board.visibleCount()).toHaveText(`1 of ${total} turns`);
  expect(page.url()).toMatch(/\/board$/);
  await board.search().fill("");
  await expect(board.cards()).toHaveCount(total);
  // Stage filter: only that column stays.
  await page.getByTestId("filter-stage").selectOption({ label: "Approval" });
  await expect(page.locator("section.column:not(.hidden)")).toHaveCount(1);
  await expect(board.column("Approval")).toBeVisible();
  expect(requests).toBe(0);
});

test("the board renders filtered on the server without JavaScript, and says what does not work", async ({ browser }, info) => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await new LoginPage(page).open();
  await new LoginPage(page).logIn("pm@turns.demo");
  await expect(page).toHaveURL(/\/board$/);
  const board = new BoardPage(page);
  const first = (await board.cards().first().getAttribute("data-turn"))!;
  await page.goto(`/board?q=${encodeURIComponent(first)}`);
  await expect(board.cards()).toHaveCount(1);
  // The search stays in its box; nothing claims to be saved or synced.
  await expect(board.search()).toHaveValue(first);
  await expect(page.getByTestId("noscript")).toContainText("JavaScript is off");
  await expect(page.getByTestId("sync-status")).toBeHidden();
  await snap(page, info, "no-javascript");
  await context.close();
});

test("a read-only user sees every fact of a turn and can change none of them", async ({ page }, info) => {
  const board = await logInAs(page, "user@turns.demo");
  await board.synced();
  const turn = psql(`SELECT t.turn_id FROM turns t JOIN turn_stages s ON s.id = t.stage_id
                      WHERE t.turn_id LIKE 'T-%' AND t.vendor_id IS NOT NULL AND t.wo_number IS NOT NULL
                        AND NOT s.is_complete_stage ORDER BY t.turn_id LIMIT 1`);
  const [code, vendor, wo, moveOut, pm] = psql(`SELECT p.property_id || '|' || v.name || '|' || t.wo_number || '|' || t.move_out_date
                                                     || '|' || u.first_name || ' ' || u.last_name
                                                FROM turns t JOIN properties p ON p.id = t.property_id JOIN vendors v ON v.id = t.vendor_id
                                                JOIN users u ON u.id = p.property_manager_id WHERE t.turn_id = '${turn}'`).split("|");
  await board.open(turn);
  const facts = page.getByTestId("facts");
  for (const fact of [code, vendor, wo, moveOut, pm]) await expect(facts).toContainText(fact);
  const drawer = page.getByTestId("drawer");
  await expect(drawer.locator("input, select, textarea")).toHaveCount(0);
  await expect(drawer.getByRole("button", { name: /save|approve|record/i })).toHaveCount(0);
  await snap(page, info, "user-turn");
});

test("wrong password, unknown page and logout each say what happened", async ({ page }) => {
  const login = new LoginPage(page);
  await login.open();
  await login.logIn("pm@turns.demo", "not-the-password");
  await expect(login.message()).toHaveText("Wrong email or password.");

  const board = await logInAs(page, "ho@turns.demo");
  await expect(board.heading()).toHaveText("Approval queue");
  const missing = await page.goto("/no-such-page");
  expect(missing?.status()).toBe(404);
  await expect(page.getByRole("heading", { name: "Page not found" })).toBeVisible();
  // Still the app: its header, who is signed in, the way back.
  await expect(page.getByTestId("user-name")).toBeVisible();
  await expect(page.getByRole("link", { name: "Board", exact: true })).toBeVisible();

  await page.goto("/board");
  await board.logOut();
  await expect(page).toHaveURL(/\/login\?notice=logged_out/);
  await expect(login.message()).toHaveText("You have been logged out.");
  await page.goto("/board");
  await expect(page).toHaveURL(/\/login\?error=required/);
});
