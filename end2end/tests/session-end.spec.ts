// Local data never outlives its session. Every request the local store makes says whose store it
// is (X-Turns-User), so a tab left open after its user's session ended (expired, or another user
// signed in on this device — cookies are shared by every tab) sends nothing and follows nothing:
// it stops, deletes the cached board, keeps the unsent edits for that user's next login and says
// so. A logout in one tab ends the user's other tabs. Each test makes its own turns with psql.
import { startTurn } from "./api";
import { CDPSession, expect, Page, test } from "@playwright/test";
import { psql, turnField, writesTo } from "./db";
import { BoardPage, cachedNames, LoginPage, logInAs } from "./pages";

test.beforeEach(({}, info) => test.skip(info.project.name !== "desktop", "runs on desktop"));

/** A user's id without hyphens, as the device names their store. */
const idOf = (email: string) => psql(`SELECT replace(id::text, '-', '') FROM users WHERE email = '${email}'`);
/** The local storage prefix of a user's store (`turns.v1.<uuid without hyphens>.`). */
const prefixOf = (email: string) => `turns.v1.${idOf(email)}.`;

const storedKeys = (page: Page, prefix: string) =>
  page.evaluate((p) => Object.keys(localStorage).filter((k) => k.startsWith(p)), prefix);

/** Take one tab offline while the other tabs of its context stay online (as DevTools does). */
async function setTabOffline(cdp: CDPSession, offline: boolean) {
  await cdp.send("Network.emulateNetworkConditions", {
    offline, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
  });
}

test("a stale tab never sends its edits under another user's session; they land when its user logs in again", async ({ browser }) => {
  const turn = await startTurn("SE-OTHER-USER-1");
  const pm = prefixOf("pm@turns.demo");
  const context = await browser.newContext();
  const tab1 = await context.newPage();
  const board1 = await logInAs(tab1, "pm@turns.demo");
  await board1.live();
  await expect(board1.card(turn)).toBeVisible();
  await expect.poll(() => cachedNames(tab1, idOf("pm@turns.demo"))).toContain("snapshot");

  // Tab 1 goes offline and edits: the edit waits in the outbox.
  const cdp = await context.newCDPSession(tab1);
  await cdp.send("Network.enable");
  await setTabOffline(cdp, true);
  await expect(board1.online()).toHaveText("Offline");
  await board1.editWo(turn, "WO-STALE-TAB");
  await expect(board1.pending()).toHaveText("1 change waiting to sync");

  // Meanwhile another user signs in on this device in tab 2 (ending pm's session here).
  const tab2 = await context.newPage();
  const board2 = await logInAs(tab2, "pm2@turns.demo");
  await board2.hydrated();

  // Back online, tab 1 is refused: it stops, says who should log in, and sends nothing.
  await setTabOffline(cdp, false);
  const notice = board1.sessionNotice();
  await expect(notice).toHaveAttribute("data-reason", "other-user");
  await expect(notice).toContainText(
    "Another user is signed in on this device. Log in as pm@turns.demo to send 1 waiting change.",
  );
  expect(turnField(turn, "wo_number")).toBe("");
  expect(writesTo(turn)).toBe(0);
  // pm's board is gone from the tab and the device; the edit is kept for pm.
  await expect(board1.card(turn)).toHaveCount(0);
  await expect(board1.pending()).toHaveText("1 change waiting to sync");
  const kept = await storedKeys(tab1, pm);
  expect(kept.filter((k) => k.startsWith(`${pm}out.`))).toHaveLength(1);
  await expect.poll(() => cachedNames(tab1, idOf("pm@turns.demo"))).toEqual([]);

  // pm logs in again from the notice: the waiting edit lands, once.
  await notice.getByTestId("session-login").click();
  await expect(tab1).toHaveURL(/\/login/);
  await new LoginPage(tab1).logIn("pm@turns.demo");
  await expect(tab1).toHaveURL(/\/board$/);
  await expect.poll(() => turnField(turn, "wo_number")).toBe("WO-STALE-TAB");
  await expect(board1.pending()).toHaveText("All changes saved");
  expect(writesTo(turn)).toBe(1);

  // Now tab 2 is the stale one: its next request is refused the same way.
  await expect(board2.sessionNotice()).toHaveAttribute("data-reason", "other-user", { timeout: 15_000 });
  await context.close();
});

test("an expired session keeps the unsent edit, drops the cached board, and asks the user to log in", async ({ browser }) => {
  const turn = await startTurn("SE-EXPIRED-1", { pm: "pm3@turns.demo" });
  const pm3 = prefixOf("pm3@turns.demo");
  const context = await browser.newContext();
  const page = await context.newPage();
  const board = await logInAs(page, "pm3@turns.demo");
  await board.live();
  await expect.poll(() => cachedNames(page, idOf("pm3@turns.demo"))).toContain("snapshot");
  await context.setOffline(true);
  await board.editWo(turn, "WO-AFTER-EXPIRY");
  await expect(board.pending()).toHaveText("1 change waiting to sync");

  // The session expires while the device is offline (no other test signs in as pm3).
  psql(`UPDATE sessions SET expires_at = now() - interval '1 minute'
         WHERE user_id = (SELECT id FROM users WHERE email = 'pm3@turns.demo')`);
  await context.setOffline(false);
  const notice = board.sessionNotice();
  await expect(notice).toHaveAttribute("data-reason", "session");
  await expect(notice).toContainText("Your session ended — log in as pm3@turns.demo to send 1 waiting change.");
  await expect(board.card(turn)).toHaveCount(0);
  expect(writesTo(turn)).toBe(0);
  const kept = await storedKeys(page, pm3);
  expect(kept.filter((k) => k.startsWith(`${pm3}out.`))).toHaveLength(1);
  await expect.poll(() => cachedNames(page, idOf("pm3@turns.demo"))).toEqual([]);

  await notice.getByTestId("session-login").click();
  await new LoginPage(page).logIn("pm3@turns.demo");
  await expect(page).toHaveURL(/\/board$/);
  await expect.poll(() => turnField(turn, "wo_number")).toBe("WO-AFTER-EXPIRY");
  await expect(board.pending()).toHaveText("All changes saved");
  await context.close();
});

test("logging out in one tab sends the user's other tabs to the login page and nothing is written back", async ({ browser }) => {
  const context = await browser.newContext();
  const tab1 = await context.newPage();
  const board1 = await logInAs(tab1, "srpm2@turns.demo");
  await board1.live();
  expect(await storedKeys(tab1, "turns.v1.")).not.toHaveLength(0);

  // Logging out works from any page, not just the board.
  const tab2 = await context.newPage();
  await tab2.goto("/properties");
  await new BoardPage(tab2).hydrated();
  await new BoardPage(tab2).logOut();
  await expect(tab2).toHaveURL(/\/login/);

  await expect(tab1).toHaveURL(/\/login\?notice=logged_out/);
  await expect(new LoginPage(tab1).message()).toHaveText("You have been logged out.");
  expect(await storedKeys(tab1, "turns.v1.")).toEqual([]);
  await context.close();
});
