// The official Electric client (@electric-sql/client from npm) against our shape server: the
// generic endpoint (with the secret) and the authorized per-user shapes (with a session cookie).
// Changes are made with psql, as any Postgres client would. Runs once (desktop project).
import { expect, test } from "@playwright/test";
import { Shape, ShapeStream } from "@electric-sql/client";
import { shapeSecret } from "../playwright.config";
import { psql } from "./db";

// One at a time: the rotation test makes every shape refetch.
test.describe.configure({ mode: "serial" });

test.beforeEach(({}, info) => {
  test.skip(info.project.name !== "desktop", "protocol tests run once");
});

const base = () => `${test.info().project.use.baseURL}`;

type Row = Record<string, unknown>;
// Other test files add turns (prefixed LF-) while these run: counts compare the rest.
const settled = (rows: Row[]) => rows.filter((r) => !String(r.turn_id).startsWith("LF-")).length;

function turnsShape(extra: Record<string, unknown> = {}, more: Partial<ConstructorParameters<typeof ShapeStream>[0]> = {}) {
  return new ShapeStream<Row>({
    url: `${base()}/v1/shape`,
    params: { table: "turns", secret: shapeSecret, ...extra } as never,
    ...more,
  });
}

async function until(check: () => boolean | Promise<boolean>, what: string) {
  await expect.poll(check, { message: what, timeout: 15_000 }).toBe(true);
}

test("initial sync, then live insert, update and delete made with psql", async () => {
  const shape = new Shape(turnsShape());
  const rows = await shape.rows;
  expect(settled(rows)).toBe(Number(psql("SELECT count(*) FROM turns WHERE turn_id NOT LIKE 'LF-%'")));
  expect(typeof rows[0].turn_amount === "string" || rows[0].turn_amount === null).toBe(true);

  const property = psql("SELECT id FROM properties ORDER BY property_id LIMIT 1");
  const stage = psql("SELECT id FROM turn_stages ORDER BY display_order LIMIT 1");
  psql(`INSERT INTO turns (turn_id, property_id, stage_id) VALUES ('E2E-LIVE-1', '${property}', '${stage}')`);
  await until(() => shape.currentRows.some((r) => r.turn_id === "E2E-LIVE-1"), "insert arrives");
  psql("UPDATE turns SET wo_number = 'WO-E2E' WHERE turn_id = 'E2E-LIVE-1'");
  await until(() => shape.currentRows.some((r) => r.turn_id === "E2E-LIVE-1" && r.wo_number === "WO-E2E"), "update arrives");
  psql("DELETE FROM turns WHERE turn_id = 'E2E-LIVE-1'");
  await until(() => !shape.currentRows.some((r) => r.turn_id === "E2E-LIVE-1"), "delete arrives");
  shape.unsubscribeAll();
});

test("where with params and a column list; rows move in and out", async () => {
  const shape = new Shape(
    turnsShape({ where: "turn_amount > $1", params: ["5000"], columns: ["id", "turn_id", "turn_amount"] }),
  );
  const rows = await shape.rows;
  expect(rows.length).toBe(Number(psql("SELECT count(*) FROM turns WHERE turn_amount > 5000")));
  expect(Object.keys(rows[0]).sort()).toEqual(["id", "turn_amount", "turn_id"]);
  const cheap = psql("SELECT turn_id FROM turns WHERE turn_amount < 1000 ORDER BY turn_id LIMIT 1");
  psql(`UPDATE turns SET turn_amount = 6000 WHERE turn_id = '${cheap}'`);
  await until(() => shape.currentRows.some((r) => r.turn_id === cheap), "row moves in");
  psql(`UPDATE turns SET turn_amount = 900 WHERE turn_id = '${cheap}'`);
  await until(() => !shape.currentRows.some((r) => r.turn_id === cheap), "row moves out");
  shape.unsubscribeAll();
});

test("a client resumes from its stored offset and handle", async () => {
  const first = turnsShape({ where: "wo_number = $1", params: ["WO-RESUME"] });
  const shape = new Shape(first);
  await shape.rows;
  const handle = first.shapeHandle!;
  const offset = first.lastOffset;
  shape.unsubscribeAll();

  psql("UPDATE turns SET wo_number = 'WO-RESUME' WHERE turn_id = (SELECT min(turn_id) FROM turns WHERE turn_id LIKE 'T-%')");
  const seen: string[] = [];
  const resumed = turnsShape({ where: "wo_number = $1", params: ["WO-RESUME"] }, { handle, offset });
  const stop = resumed.subscribe((messages) => {
    for (const m of messages) if ("key" in m) seen.push(String((m as { headers: { operation: string } }).headers.operation));
  });
  await until(() => seen.includes("insert"), "the change made while away arrives after resuming");
  expect(resumed.shapeHandle).toBe(handle);
  stop();
});

test("several clients at once see the same rows", async () => {
  const shapes = [0, 1, 2, 3].map(() => new Shape(turnsShape({ where: "is_active" })));
  const all = await Promise.all(shapes.map((s) => s.rows));
  const count = Number(psql("SELECT count(*) FROM turns WHERE is_active AND turn_id NOT LIKE 'LF-%'"));
  for (const rows of all) expect(settled(rows)).toBe(count);
  psql("UPDATE turns SET expected_completion_date = DATE '2030-01-01' WHERE turn_id = (SELECT max(turn_id) FROM turns WHERE is_active)");
  for (const s of shapes) {
    await until(() => s.currentRows.some((r) => r.expected_completion_date === "2030-01-01"), "every client sees it");
    s.unsubscribeAll();
  }
});

test("authorized shapes with a session cookie hold the user's scope only", async ({ request }) => {
  const login = await request.post("/auth/login", { data: { email: "vendor@turns.demo", password: "turns-demo" } });
  expect(login.ok()).toBe(true);
  const cookie = (login.headers()["set-cookie"] ?? "").split(";")[0];
  const stream = new ShapeStream<Row>({ url: `${base()}/api/shapes/turns`, headers: { cookie } });
  const rows = await new Shape(stream).rows;
  const expected = Number(
    psql("SELECT count(*) FROM turns t JOIN users u ON u.vendor_id = t.vendor_id WHERE t.is_active AND u.email = 'vendor@turns.demo' AND t.turn_id NOT LIKE 'LF-%'"),
  );
  expect(settled(rows)).toBe(expected);
  for (const r of rows) {
    expect(r).not.toHaveProperty("turn_amount");
    expect(r).not.toHaveProperty("approval_status");
  }
  const widened = await fetch(`${base()}/api/shapes/turns?offset=-1&table=users`, { headers: { cookie } });
  expect(widened.status).toBe(400);
  const anonymous = await fetch(`${base()}/api/shapes/turns?offset=-1`);
  expect(anonymous.status).toBe(401);
});

test("live changes over Server-Sent Events", async () => {
  const stream = turnsShape({ where: "wo_number = $1", params: ["WO-SSE"] }, { liveSse: true });
  const shape = new Shape(stream);
  await shape.rows;
  psql("UPDATE turns SET wo_number = 'WO-SSE' WHERE turn_id = (SELECT min(turn_id) FROM turns WHERE wo_number IS NULL AND turn_id LIKE 'T-%')");
  await until(() => shape.currentRows.length === 1, "the change arrives as an event");
  psql("UPDATE turns SET wo_number = NULL WHERE wo_number = 'WO-SSE'");
  await until(() => shape.currentRows.length === 0, "and moves out again");
  shape.unsubscribeAll();
});

test("after the log is rotated, clients get 409 and recover by refetching", async () => {
  const stream = new ShapeStream<Row>({ url: `${base()}/v1/shape`, params: { table: "vendors", secret: shapeSecret } as never });
  const shape = new Shape(stream);
  await shape.rows;
  const before = stream.shapeHandle;
  // TRUNCATE cannot be followed row by row: the server starts a new log epoch.
  psql("BEGIN; TRUNCATE approval_thresholds; INSERT INTO approval_thresholds DEFAULT VALUES; COMMIT;");
  psql("INSERT INTO vendors (name, trade, is_approved) VALUES ('After Rotation LLC', 'HVAC', true)");
  await until(() => shape.currentRows.some((r) => r.name === "After Rotation LLC"), "the client recovers");
  expect(stream.shapeHandle).not.toBe(before);
  expect(shape.currentRows.length).toBe(Number(psql("SELECT count(*) FROM vendors")));
  shape.unsubscribeAll();
});

test("authorized shapes follow scope changes live: a turn reassigned between vendors moves", async ({ playwright }) => {
  // One cookie jar per user, as two devices would have: logging in again in one jar ends the
  // session it had.
  const cookieFor = async (email: string) => {
    const device = await playwright.request.newContext({ baseURL: base() });
    const r = await device.post("/auth/login", { data: { email, password: "turns-demo" } });
    expect(r.ok()).toBe(true);
    const cookie = (r.headers()["set-cookie"] ?? "").split(";")[0];
    await device.dispose();
    return cookie;
  };
  const follow = (cookie: string) => new Shape(new ShapeStream<Row>({ url: `${base()}/api/shapes/turns`, headers: { cookie } }));
  const one = follow(await cookieFor("vendor@turns.demo"));
  const two = follow(await cookieFor("vendor2@turns.demo"));
  await Promise.all([one.rows, two.rows]);
  const turn = psql(
    "SELECT t.turn_id FROM turns t JOIN users u ON u.vendor_id = t.vendor_id WHERE u.email = 'vendor@turns.demo' AND t.is_active ORDER BY t.turn_id LIMIT 1",
  );
  expect(one.currentRows.some((r) => r.turn_id === turn)).toBe(true);
  psql(`UPDATE turns SET vendor_id = (SELECT vendor_id FROM users WHERE email = 'vendor2@turns.demo') WHERE turn_id = '${turn}'`);
  await until(() => !one.currentRows.some((r) => r.turn_id === turn), "the turn leaves the first vendor's shape");
  await until(() => two.currentRows.some((r) => r.turn_id === turn), "and arrives in the second vendor's");
  psql(`UPDATE turns SET wo_number = 'WO-MOVED' WHERE turn_id = '${turn}'`);
  await until(() => two.currentRows.some((r) => r.turn_id === turn && r.wo_number === "WO-MOVED"), "later edits follow it");
  one.unsubscribeAll();
  two.unsubscribeAll();
});
