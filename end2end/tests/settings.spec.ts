// An admin changes what every board leans on: stage names and order, a stage's QC checklist, the
// cost templates. Open boards follow without a reload. These run in their own project, after all
// the others (playwright.config.ts), because the other tests lean on the demo's settings while
// they run; each test puts back what it changed.
import { expect, Page, test } from "@playwright/test";
import { startTurn } from "./api";
import { psql, turnField } from "./db";
import { logInAs, snap } from "./pages";

// One at a time, in order: each changes settings the next one reads.
test.describe.configure({ mode: "default" });

async function openAdmin(page: Page) {
  await logInAs(page, "admin@turns.demo");
  await page.goto("/admin");
  await page.locator("#app[data-hydrated=true]").waitFor();
}

test("an admin renames a stage and moves another; an open board follows", async ({ browser, page }) => {
  const pm = await browser.newContext();
  const pmPage = await pm.newPage();
  const board = await logInAs(pmPage, "pm@turns.demo");
  await board.synced();
  const columns = () => pmPage.locator("section.column").evaluateAll((cs) => cs.map((c) => c.getAttribute("data-stage")));
  const before = await columns();
  expect(before.slice(0, 3)).toEqual(["Notice", "Move-out inspection", "Scope & bid"]);

  await openAdmin(page);
  const notice = page.locator('[data-testid="stage-row"][data-stage="Notice"]');
  await notice.getByTestId("stage-name").fill("Notice given");
  await notice.getByTestId("save-stage").click();
  await expect(page.getByTestId("admin-saved")).toBeVisible();
  await expect(board.column("Notice given")).toBeVisible();

  // Moved by keyboard: the "earlier" button of "Scope & bid", focused and pressed with Enter
  // (once the page shows the rename: each change draws the lists again).
  await expect(page.locator('[data-testid="stage-row"][data-stage="Notice given"]')).toBeVisible();
  const scope = page.locator('[data-testid="stage-row"][data-stage="Scope & bid"]');
  await scope.getByTestId("stage-earlier").focus();
  await page.keyboard.press("Enter");
  await expect.poll(columns).toEqual(["Notice given", "Scope & bid", "Move-out inspection", ...before.slice(3)]);
  expect(psql(`SELECT string_agg(name, ' | ' ORDER BY display_order) FROM turn_stages WHERE is_active`))
    .toBe(["Notice given", "Scope & bid", "Move-out inspection", ...before.slice(3)].join(" | "));
  expect(psql(`SELECT count(*) FROM audit_logs WHERE action IN ('edit_stage', 'move_stage')`)).not.toBe("0");

  // Put back, from the page.
  await expect(page.getByTestId("stage-row").nth(1)).toHaveAttribute("data-stage", "Scope & bid");
  await page.locator('[data-testid="stage-row"][data-stage="Scope & bid"]').getByTestId("stage-later").click();
  await expect.poll(columns).toEqual(["Notice given", ...before.slice(1)]);
  await expect(page.getByTestId("stage-row").nth(1)).toHaveAttribute("data-stage", "Move-out inspection");
  const renamed = page.locator('[data-testid="stage-row"][data-stage="Notice given"]');
  await renamed.getByTestId("stage-name").fill("Notice");
  await renamed.getByTestId("save-stage").click();
  await expect.poll(columns).toEqual(before);
  await pm.close();
});

test("an admin edits the QC checklist while an inspector has the form open", async ({ browser, page }, info) => {
  const turn = await startTurn("ST-QC-1", { stage: "QC inspection", amount: 900, vendor: "Brightline Painting" });
  const inspector = await browser.newContext();
  const inspectorPage = await inspector.newPage();
  const board = await logInAs(inspectorPage, "inspector@turns.demo");
  await board.synced();
  await board.open(turn);
  const form = inspectorPage.getByTestId("qc-form");
  const labels = () => form.locator("legend").allTextContents();
  await expect(form.getByTestId("qc-item")).toHaveCount(6);
  const seeded = await labels();

  await openAdmin(page);
  const list = page.locator('[data-testid="checklist"][data-stage="QC inspection"]');
  await expect(list.getByTestId("qc-item")).toHaveCount(6);
  await list.getByTestId("qc-new-label").fill("Gas shut-off tagged");
  await list.getByTestId("qc-add").click();
  await expect(page.getByTestId("admin-saved")).toBeVisible();
  await expect.poll(labels).toEqual([...seeded, "Gas shut-off tagged"]);
  await expect(list.getByTestId("qc-item")).toHaveCount(7);

  // Reworded and moved up a place: the inspector's form follows.
  const added = page.locator('[data-testid="checklist"][data-stage="QC inspection"] [data-testid="qc-item"]').last();
  await added.getByTestId("qc-label").fill("Gas shut-off valve tagged");
  await added.getByTestId("qc-save").click();
  await expect.poll(labels).toEqual([...seeded, "Gas shut-off valve tagged"]);
  await page.locator('[data-testid="qc-item"][data-label="Gas shut-off valve tagged"]').getByTestId("qc-earlier").click();
  await expect.poll(labels).toEqual([...seeded.slice(0, 5), "Gas shut-off valve tagged", seeded[5]]);
  await expect(list.getByTestId("qc-item").nth(5)).toHaveAttribute("data-label", "Gas shut-off valve tagged");
  await snap(page, info, "admin-checklists");

  // Removed: off the form, kept in the table for the inspections that name it.
  await page.locator('[data-testid="qc-item"][data-label="Gas shut-off valve tagged"]').getByTestId("qc-remove").click();
  await expect.poll(labels).toEqual(seeded);
  expect(psql(`SELECT is_active FROM qc_checklist_items WHERE label = 'Gas shut-off valve tagged'`)).toBe("f");
  expect(psql(`SELECT count(*) FROM audit_logs WHERE table_name = 'qc_checklist_items'`)).toBe("4");
  // The seeded six keep their order.
  expect(psql(`SELECT string_agg(label, ' | ' ORDER BY position, id) FROM qc_checklist_items WHERE is_active`)).toBe(seeded.join(" | "));
  await inspector.close();
});

test("an admin adds a cost template and retires it; a manager scoping a turn sees both at once", async ({ browser, page }, info) => {
  psql(`INSERT INTO properties (property_id, name, street_address, bedrooms, bathrooms, area_sqft,
                                property_manager_id, sr_property_manager_id)
        SELECT 'P-SET-6', 'Six Bed Home', '6 Wide Ave', 6, 3.0, 3200, pm.id, sr.id FROM users pm, users sr
         WHERE pm.email = 'pm3@turns.demo' AND sr.email = 'srpm@turns.demo'`);
  const pm = await browser.newContext();
  const pmPage = await pm.newPage();
  const board = await logInAs(pmPage, "pm3@turns.demo");
  await board.synced();
  await pmPage.getByTestId("new-turn").click();
  const newTurn = pmPage.getByTestId("new-turn-form");
  await newTurn.getByTestId("new-turn-home").selectOption({ label: "Six Bed Home (P-SET-6)" });
  await newTurn.getByTestId("create-turn").click();
  const drawer = pmPage.getByTestId("drawer");
  await expect(drawer.getByTestId("scope-empty")).toBeVisible();
  const offered = drawer.getByTestId("template").locator("option").filter({ hasText: "Six-bed full turn" });
  await expect(drawer.getByTestId("template").locator("option").first()).toBeAttached();
  await expect(offered).toHaveCount(0);

  await openAdmin(page);
  const form = page.getByTestId("new-template");
  await form.locator("summary").click();
  await form.getByTestId("template-name").fill("Six-bed full turn");
  await form.getByTestId("template-bedrooms").fill("6");
  await form.getByTestId("line-category").fill("Paint");
  await form.getByTestId("line-description").fill("Whole house");
  await form.getByTestId("line-unit-cost").fill("4800");
  await form.getByTestId("template-add-line").click();
  const second = form.getByTestId("template-line").nth(1);
  await second.getByTestId("line-category").fill("Flooring");
  await second.getByTestId("line-description").fill("Carpet, bedrooms");
  await second.getByTestId("line-quantity").fill("3");
  await second.getByTestId("line-unit-cost").fill("900.50");
  // A bad size is caught before anything is sent.
  await form.getByTestId("template-min").fill("4000");
  await form.getByTestId("template-max").fill("3000");
  await form.getByTestId("save-template").click();
  await expect(form.getByRole("alert")).toContainText("The largest area cannot be below the smallest.");
  await form.getByTestId("template-min").fill("");
  await form.getByTestId("template-max").fill("");
  await form.getByTestId("save-template").click();
  await expect(page.getByTestId("admin-saved")).toBeVisible();
  const saved = page.locator('[data-testid="template"][data-name="Six-bed full turn"]');
  await expect(saved.locator("summary")).toHaveText("Six-bed full turn · 6 bd · $7,501.50");
  expect(psql(`SELECT sum((l->>'quantity')::numeric * (l->>'unit_cost')::numeric) FROM cost_templates, jsonb_array_elements(items) l
               WHERE name = 'Six-bed full turn'`)).toBe("7501.50");
  await snap(page, info, "admin-templates");

  // The manager's open drawer offers it, as a template for this home.
  await expect(offered).toContainText("Six-bed full turn (fits this home) · $7,501.50");

  // Retired: no longer offered.
  await saved.locator("summary").click();
  await saved.getByTestId("template-active").uncheck();
  await saved.getByTestId("save-template").click();
  await expect(page.locator('[data-testid="template"][data-name="Six-bed full turn"] summary')).toContainText("retired");
  await expect(offered).toHaveCount(0);
  expect(psql(`SELECT is_active FROM cost_templates WHERE name = 'Six-bed full turn'`)).toBe("f");
  await pm.close();
});

test("an admin raises a manager's own limit; an open board routes by it, offline too", async ({ browser, page }) => {
  const turn = await startTurn("ST-LIMIT-1", { amount: 1500 });
  const pm = await browser.newContext();
  const pmPage = await pm.newPage();
  const board = await logInAs(pmPage, "pm@turns.demo");
  await board.synced();
  await board.open(turn);
  const drawer = pmPage.getByTestId("drawer");
  await expect(drawer.getByTestId("own-limit")).toHaveText("Up to $1,000.00 you approve it yourself; above that, the DFO decides.");

  await openAdmin(page);
  await page.getByTestId("pm-limit").fill("2000");
  await page.getByTestId("save-thresholds").click();
  await expect(page.getByTestId("admin-saved")).toBeVisible();
  await expect(drawer.getByTestId("own-limit")).toContainText("Up to $2,000.00");

  // Offline, the board routes the request by the new limit: the manager's own approval.
  await pm.setOffline(true);
  await drawer.getByTestId("submit-approval").click();
  await expect(board.card(turn).getByTestId("approval-status")).toHaveText("PM approved");
  expect(turnField(turn, "approval_status")).toBe("PENDING");
  expect(turnField(turn, "approved_turn_amount")).toBe("");
  // Back online, the server agrees.
  await pm.setOffline(false);
  await expect.poll(() => turnField(turn, "approved_turn_amount"), { timeout: 20_000 }).toBe("1500.00");
  await expect(board.card(turn).getByTestId("approval-status")).toHaveText("PM approved");

  // Put back, from the page.
  await page.getByTestId("pm-limit").fill("1000");
  await page.getByTestId("save-thresholds").click();
  await expect.poll(() => psql(`SELECT pm_self_approve_limit FROM approval_thresholds`)).toBe("1000.00");
  await pm.close();
});
