// The dashboard as a manager and an admin use it (desktop and tablet): the numbers the server
// computed, drawn as SVG with their tables; filters that live in the URL; the CSV export of the
// same homes, parsed back and compared with the database.
import { expect, test } from "@playwright/test";
import { psql } from "./db";
import { logInAs, snap } from "./pages";

test.beforeEach(({}, info) => test.skip(info.project.name === "phone", "desktop and tablet"));

test("a manager's dashboard counts their portfolio; filters live in the URL; the CSV matches", async ({ page }, info) => {
  await logInAs(page, "pm@turns.demo");
  await page.getByRole("link", { name: "Dashboard" }).click();
  await expect(page).toHaveURL(/\/dashboard$/);
  await expect(page.getByRole("heading", { name: "Dashboard" })).toBeVisible();
  // Work in progress per stage, against the database (the PM's open turns).
  const open = psql(`SELECT count(*) FROM turns t JOIN properties p ON p.id = t.property_id JOIN users u ON u.id = p.property_manager_id
                      JOIN turn_stages s ON s.id = t.stage_id
                     WHERE u.email = 'pm@turns.demo' AND t.is_active AND t.turn_completion_date IS NULL AND NOT s.is_complete_stage`);
  const stages = page.getByTestId("chart-stages-table").locator("tbody tr td");
  await expect(stages.first()).toBeAttached();
  const counted = (await stages.allTextContents()).reduce((sum, n) => sum + Number(n), 0);
  expect(counted).toBe(Number(open));
  await expect(page.getByTestId("chart-stages").locator("svg rect")).toHaveCount(await stages.count());
  await expect(page.getByTestId("chart-turn-days").locator("svg")).toHaveAttribute("role", "img");
  await snap(page, info, "dashboard");

  // Non-core homes only: the choice is in the URL, and the counts follow it.
  await page.getByTestId("filter-core").selectOption("non-core");
  await page.getByTestId("apply-filters").click();
  await expect(page).toHaveURL(/core=non-core/);
  await expect(page.getByTestId("filter-core")).toHaveValue("non-core");
  const nonCore = psql(`SELECT count(*) FROM turns t JOIN properties p ON p.id = t.property_id JOIN users u ON u.id = p.property_manager_id
                         JOIN turn_stages s ON s.id = t.stage_id
                        WHERE u.email = 'pm@turns.demo' AND t.is_active AND NOT p.is_core AND t.turn_completion_date IS NULL
                          AND NOT s.is_complete_stage`);
  const narrowed = (await page.getByTestId("chart-stages-table").locator("tbody tr td").allTextContents())
    .reduce((sum, n) => sum + Number(n), 0);
  expect(narrowed).toBe(Number(nonCore));

  // The export takes the same filters: the non-core homes' turns.
  const href = await page.getByTestId("export-csv").getAttribute("href");
  expect(href).toContain("core=non-core");
  const csv = await (await page.request.get(href!)).text();
  const ids = csv.replace(/^\uFEFF/, "").trim().split("\r\n").slice(1).map((line) => line.split(",")[0]);
  const from = await page.getByTestId("filter-from").inputValue();
  const to = await page.getByTestId("filter-to").inputValue();
  const want = psql(`SELECT coalesce(string_agg(t.turn_id, ',' ORDER BY t.turn_id), '') FROM turns t JOIN properties p ON p.id = t.property_id
                       JOIN users u ON u.id = p.property_manager_id
                      WHERE u.email = 'pm@turns.demo' AND t.is_active AND NOT p.is_core
                        AND (t.turn_completion_date IS NULL OR t.turn_completion_date BETWEEN '${from}' AND '${to}')`);
  expect(ids.join(",")).toBe(want);
});

test("vendors and approvers have no dashboard", async ({ page }) => {
  await logInAs(page, "vendor@turns.demo");
  await expect(page.getByRole("link", { name: "Dashboard" })).toHaveCount(0);
  const res = await page.goto("/dashboard");
  expect(res?.status()).toBe(403);
  await expect(page.getByRole("alert")).toContainText("You do not have access to this.");
});
