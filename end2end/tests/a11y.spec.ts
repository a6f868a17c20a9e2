// Every screen, as each role meets it, at phone, tablet and desktop sizes (the three projects):
// axe-core finds no serious or critical accessibility violation (WCAG 2 A and AA rules), and a
// screenshot of each lands in end2end/screenshots/ to be looked at.
import AxeBuilder from "@axe-core/playwright";
import { expect, Page, test, TestInfo } from "@playwright/test";
import { psql } from "./db";
import { BoardPage, LoginPage, logInAs, PropertiesPage, QueuePage, snap } from "./pages";

/** Serious and critical violations on the page as it is now, one line each (rule: where). */
async function violations(page: Page) {
  const look = async () => {
    const result = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
    return result.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ")}`
        // For colours, what axe measured (foreground, background, ratio): enough to see why.
        + v.nodes.slice(0, 1).flatMap((n) => n.any.map((a) => (a.data ? ` ${JSON.stringify(a.data)}` : ""))).join(""));
  };
  const first = await look();
  if (first.length === 0) return first;
  // A live update (the inbox count of a notification that just arrived, say) can redraw an
  // element while axe reads its colours; a real violation is there on a second look too.
  await page.waitForTimeout(1000);
  const second = new Set(await look());
  return first.filter((v) => second.has(v));
}

async function check(page: Page, info: TestInfo, screen: string) {
  expect(await violations(page), screen).toEqual([]);
  await snap(page, info, `screen-${screen}`);
}

test("login and not-found pages", async ({ page }, info) => {
  await new LoginPage(page).open();
  await check(page, info, "login");
  // The check can fail: a button with no name is found.
  await page.evaluate(() => document.querySelector("form")!.append(document.createElement("button")));
  expect(await violations(page)).toEqual([expect.stringMatching(/^button-name: /)]);
  await logInAs(page, "pm@turns.demo");
  await page.goto("/no-such-page");
  await check(page, info, "not-found");
});

test("the manager's board, turn, new turn, homes, history and inbox", async ({ page }, info) => {
  const board = await logInAs(page, "pm@turns.demo");
  await board.synced();
  await check(page, info, "pm-board");
  const turn = (await board.cards().first().getAttribute("data-turn"))!;
  await board.open(turn);
  await check(page, info, "pm-turn");
  await page.getByRole("button", { name: "Close" }).click();
  await page.getByTestId("new-turn").click();
  await expect(page.getByTestId("new-turn-form")).toBeVisible();
  await check(page, info, "pm-new-turn");

  const homes = new PropertiesPage(page);
  await homes.open();
  await expect(homes.rows().first()).toBeVisible();
  await check(page, info, "pm-properties");
  await homes.rows().first().getByTestId("edit-property").click();
  await expect(page.getByTestId("property-form")).toBeVisible();
  await check(page, info, "pm-property-form");

  await page.goto("/history");
  await new BoardPage(page).hydrated();
  await check(page, info, "pm-history");
  await page.goto("/dashboard");
  await new BoardPage(page).hydrated();
  await check(page, info, "pm-dashboard");
  await page.goto("/inbox");
  await new BoardPage(page).hydrated();
  await expect(page.getByTestId("notification").first().or(page.getByTestId("inbox-empty"))).toBeVisible();
  await check(page, info, "pm-inbox");
});

test("the admin page", async ({ page }, info) => {
  await logInAs(page, "admin@turns.demo");
  await page.goto("/admin");
  await new BoardPage(page).hydrated();
  await expect(page.getByTestId("users")).toBeVisible();
  await check(page, info, "admin");
  // A password link and the page it opens. Unused, a link changes nothing; a newer one replaces
  // it, so each viewport makes one for a user of its own.
  const whose = { phone: "user@turns.demo", tablet: "srpm2@turns.demo", desktop: "ho@turns.demo" }[info.project.name]!;
  await page.locator(`[data-testid="user-row"][data-email="${whose}"]`).getByTestId("reset-password").click();
  const link = (await page.getByTestId("link").textContent())!;
  await check(page, info, "admin-link");
  // The long link wraps: the page does not run off a phone's screen.
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(page.viewportSize()!.width);
  const other = await page.context().browser()!.newContext({ viewport: page.viewportSize()! });
  const linkPage = await other.newPage();
  await linkPage.goto(link);
  await new BoardPage(linkPage).hydrated();
  await expect(linkPage.getByTestId("set-password")).toBeVisible();
  await check(linkPage, info, "password-link");
  await other.close();
  await page.goto("/account");
  await new BoardPage(page).hydrated();
  await expect(page.getByTestId("session").first()).toBeVisible();
  await check(page, info, "account");
});

test("the approver's queue and decision", async ({ page }, info) => {
  const board = await logInAs(page, "dfo@turns.demo");
  await board.synced();
  const queue = new QueuePage(page);
  await expect(queue.items().first()).toBeVisible();
  await check(page, info, "dfo-queue");
  const first = (await queue.items().first().getAttribute("data-turn"))!;
  await queue.open(first);
  await expect(queue.decision().getByRole("heading", { name: "History" })).toBeVisible();
  await check(page, info, "dfo-decision");
  await queue.decision().getByTestId("reject").click();
  await check(page, info, "dfo-reject");
});

test("the vendor's jobs and a job", async ({ page }, info) => {
  const board = await logInAs(page, "vendor@turns.demo");
  await board.synced();
  await check(page, info, "vendor-jobs");
  const job = (await board.cards().first().getAttribute("data-turn"))!;
  await board.open(job);
  await check(page, info, "vendor-job");
});

test("the inspector's QC form and a read-only user's turn", async ({ page }, info) => {
  const board = await logInAs(page, "inspector@turns.demo");
  await board.synced();
  const atQc = psql(`SELECT t.turn_id FROM turns t JOIN turn_stages s ON s.id = t.stage_id
                      WHERE s.name = 'QC inspection' AND t.is_active AND t.turn_id LIKE 'T-%' ORDER BY t.turn_id LIMIT 1`);
  await board.open(atQc);
  await expect(page.getByTestId("qc-form")).toBeVisible();
  await check(page, info, "inspector-qc");
  await page.keyboard.press("Escape");
  await board.logOut();

  const user = await logInAs(page, "user@turns.demo");
  await user.synced();
  await check(page, info, "user-board");
  await user.open((await user.cards().first().getAttribute("data-turn"))!);
  await check(page, info, "user-turn");
});
