// Page objects: one per screen, so tests read as what a user does.
import { expect, Page, TestInfo } from "@playwright/test";

export const PASSWORD = "turns-demo";

export class LoginPage {
  constructor(private page: Page) {}

  async open(query = "") {
    return this.page.goto(`/login${query}`);
  }

  async logIn(email: string, password = PASSWORD) {
    await this.page.getByLabel("Email").fill(email);
    await this.page.getByLabel("Password").fill(password);
    await this.page.getByRole("button", { name: "Log in" }).click();
  }

  message() {
    return this.page.getByTestId("login-message");
  }
}

export class BoardPage {
  constructor(private page: Page) {}

  heading() {
    return this.page.getByRole("heading", { level: 1 });
  }
  cards() {
    return this.page.getByTestId("turn-card");
  }
  visibleCount() {
    return this.page.getByTestId("visible-count");
  }
  search() {
    return this.page.getByTestId("search");
  }
  column(stage: string) {
    return this.page.locator(`section.column[data-stage="${stage}"]`);
  }
  card(turnId: string) {
    return this.page.locator(`[data-testid="turn-card"][data-turn="${turnId}"]`);
  }
  pending() {
    return this.page.getByTestId("pending-count");
  }
  online() {
    return this.page.getByTestId("online-status");
  }
  /** Hydrated, following the stream, and able to start offline. */
  /** Hydrated and synced once: enough for a test that never reloads without network. */
  async synced() {
    await this.hydrated();
    await expect(this.page.getByTestId("last-synced")).not.toBeEmpty();
  }
  /** Synced, and the service worker keeps the app for an offline reload. */
  async live() {
    await this.synced();
    // The service worker's first install fetches the app shell: slow when the machine is busy.
    await expect(this.page.locator("html")).toHaveAttribute("data-offline", "ready", { timeout: 30_000 });
  }
  async open(turnId: string) {
    await this.card(turnId).getByTestId("open-turn").click();
    await expect(this.page.getByTestId("drawer")).toBeVisible();
  }
  async hydrated() {
    await expect(this.page.locator("#app")).toHaveAttribute("data-hydrated", "true");
  }
  async logOut() {
    await this.page.getByRole("button", { name: "Log out", exact: true }).click();
  }
  /** What the sync bar says once this tab's session is over (with a "Log in" link). */
  sessionNotice() {
    return this.page.getByTestId("session-notice");
  }
  /** Set a turn's work order in its drawer and save (queued in the outbox at once). */
  async editWo(turnId: string, wo: string) {
    await this.open(turnId);
    await this.page.getByTestId("edit-wo").fill(wo);
    await this.page.getByTestId("save-turn").click();
    await expect(this.page.getByTestId("drawer")).toHaveCount(0);
  }
}

/** The approver's board: what waits for their decision, and the decision beside it. */
export class QueuePage {
  constructor(private page: Page) {}

  items() {
    return this.page.getByTestId("queue-item");
  }
  item(turnId: string) {
    return this.page.locator(`[data-testid="queue-item"][data-turn="${turnId}"]`);
  }
  decision() {
    return this.page.getByTestId("decision");
  }
  /** Tap a waiting turn: its decision view opens. */
  async open(turnId: string) {
    await this.item(turnId).getByTestId("open-turn").click();
    await expect(this.page.getByTestId("decision-title")).toContainText(turnId);
  }
  /** The confirmation of the decision just taken, with its Undo. */
  decided() {
    return this.page.getByTestId("decided");
  }
}

export class PropertiesPage {
  constructor(private page: Page) {}

  /** Opened and hydrated: a click before hydration does nothing, and offline it never will. */
  async open() {
    await this.page.goto("/properties");
    await expect(this.page.locator("#app")).toHaveAttribute("data-hydrated", "true");
  }
  rows() {
    return this.page.getByTestId("property-row");
  }
}

/** Log in through the form and land on the board. */
export async function logInAs(page: Page, email: string) {
  await new LoginPage(page).open();
  await new LoginPage(page).logIn(email);
  await expect(page).toHaveURL(/\/board$/);
  return new BoardPage(page);
}

/** Full-page screenshot kept as a test artifact (end2end/screenshots, not committed). */
export async function snap(page: Page, info: TestInfo, name: string) {
  await page.screenshot({ path: `screenshots/${info.project.name}-${name}.png`, fullPage: true });
}

/** The names a user's IndexedDB cache holds (`snapshot`, `shape.<name>`): none if it has no
 * database. `user` is the id without hyphens. Never creates the database. */
export async function cachedNames(page: Page, user: string): Promise<string[]> {
  return page.evaluate(async (name) => {
    const dbs = await indexedDB.databases();
    if (!dbs.some((d) => d.name === name)) return [];
    return await new Promise<string[]>((resolve, reject) => {
      const open = indexedDB.open(name);
      open.onsuccess = () => {
        const db = open.result;
        if (!db.objectStoreNames.contains("kv")) { db.close(); resolve([]); return; }
        const req = db.transaction("kv").objectStore("kv").getAllKeys();
        req.onsuccess = () => { db.close(); resolve(req.result.map(String)); };
        req.onerror = () => { db.close(); reject(req.error); };
      };
      open.onerror = () => reject(open.error);
    });
  }, `turns-${user}`);
}

/** A value of a user's IndexedDB cache (a JSON string), or null. Never creates the database. */
/** Write a value into a user's IndexedDB cache (as another version of the app would). */
export async function putCached(page: Page, user: string, name: string, value: string) {
  await page.evaluate(async ([db, name, value]) => {
    await new Promise<void>((resolve, reject) => {
      const open = indexedDB.open(db);
      open.onsuccess = () => {
        const conn = open.result;
        const req = conn.transaction("kv", "readwrite").objectStore("kv").put(value, name);
        req.onsuccess = () => { conn.close(); resolve(); };
        req.onerror = () => { conn.close(); reject(req.error); };
      };
      open.onerror = () => reject(open.error);
    });
  }, [`turns-${user}`, name, value]);
}

export async function cachedValue(page: Page, user: string, name: string): Promise<string | null> {
  return page.evaluate(async ([db, name]) => {
    if (!(await indexedDB.databases()).some((d) => d.name === db)) return null;
    return await new Promise<string | null>((resolve, reject) => {
      const open = indexedDB.open(db);
      open.onsuccess = () => {
        const conn = open.result;
        if (!conn.objectStoreNames.contains("kv")) { conn.close(); resolve(null); return; }
        const req = conn.transaction("kv").objectStore("kv").get(name);
        req.onsuccess = () => { conn.close(); resolve(req.result ?? null); };
        req.onerror = () => { conn.close(); reject(req.error); };
      };
      open.onerror = () => reject(open.error);
    });
  }, [`turns-${user}`, name]);
}
