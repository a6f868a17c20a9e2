// Setting up turns the way the app does: through the mutation endpoint, as the users whose work
// it is (the manager starts and scopes it, the DFO approves, the inspector passes QC). Tests read
// ids with psql, and write with it only to simulate another system.
import { databaseUrl } from "../playwright.config";
import { psql, setupDone } from "./db";

const base = `http://127.0.0.1:${process.env.E2E_PORT ?? "3100"}`;
const sessions = new Map<string, string>();

/** A session cookie for a demo user (one per user per test worker). */
async function session(email: string, url = base): Promise<string> {
  const known = sessions.get(url + email);
  if (known) return known;
  const res = await fetch(`${url}/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password: "turns-demo" }),
  });
  if (!res.ok) throw new Error(`login ${email}: ${res.status}`);
  const cookie = res.headers.getSetCookie().map((c) => c.split(";")[0]).find((c) => c.startsWith("turns_session="));
  if (!cookie) throw new Error(`login ${email}: no session cookie`);
  sessions.set(url + email, cookie);
  return cookie;
}

/** Apply changes as `email`, in order; each must be applied. */
export async function mutate(email: string, changes: object[], url = base) {
  const cookie = await session(email, url);
  const batch = changes.map((change) => ({
    id: crypto.randomUUID(), base_version: null, device_time: new Date().toISOString(), change,
  }));
  const res = await fetch(`${url}/api/mutate`, {
    method: "POST",
    headers: { "content-type": "application/json", cookie },
    body: JSON.stringify({ batch }),
  });
  if (!res.ok) throw new Error(`mutate as ${email}: ${res.status} ${await res.text()}`);
  const outcomes = await res.json();
  outcomes.forEach((o: any, i: number) => {
    if (!("applied" in o)) throw new Error(`${JSON.stringify(changes[i])} as ${email}: ${JSON.stringify(o)}`);
  });
}

export type TurnSetup = { pm?: string; stage?: string; amount?: number; status?: string; vendor?: string };

const stageId = (name: string, dbUrl?: string) => psql(`SELECT id FROM turn_stages WHERE name = '${name}'`, dbUrl);

/**
 * A new turn on one of a manager's core properties, started and brought to `opts` through the
 * app: the amount and vendor set, submitted for approval (approved by the DFO when a later stage
 * needs it and the amount is beyond the manager's own limit), QC passed for a complete stage,
 * then moved to its stage.
 */
export async function startTurn(turnId: string, opts: TurnSetup = {}, url = base, dbUrl?: string) {
  const pm = opts.pm ?? "pm@turns.demo";
  const property = psql(`SELECT p.id FROM properties p JOIN users u ON u.id = p.property_manager_id
                          WHERE u.email = '${pm}' AND p.is_core ORDER BY p.property_id LIMIT 1`, dbUrl);
  const id = crypto.randomUUID();
  const moveOut = new Date(Date.now() - 3 * 86_400_000).toISOString().slice(0, 10);
  await mutate(pm, [{ create_turn: { id, turn_id: turnId, property_id: property, move_out_date: moveOut, wo_number: null } }], url);
  const edits: object[] = [];
  if (opts.amount !== undefined) edits.push({ amount: { from: null, to: String(opts.amount) } });
  if (opts.vendor) {
    const vendor = psql(`SELECT id FROM vendors WHERE name = '${opts.vendor}'`, dbUrl);
    edits.push({ vendor: { from: null, to: vendor } });
  }
  if (edits.length) await mutate(pm, [{ edit_turn: { turn: id, edits } }], url);
  const stage = opts.stage ?? "Notice";
  const order = (name: string) => Number(psql(`SELECT display_order FROM turn_stages WHERE name = '${name}'`, dbUrl));
  const pastApproval = order(stage) >= order("Approval");
  if (opts.status === "DFO_APPROVAL_NEEDED" || (pastApproval && opts.amount !== undefined)) {
    await mutate(pm, [{ submit_for_approval: { turn: id } }], url);
  }
  const status = () => psql(`SELECT approval_status FROM turns WHERE id = '${id}'`, dbUrl);
  if (opts.status !== "DFO_APPROVAL_NEEDED" && status() === "DFO_APPROVAL_NEEDED") {
    await mutate("dfo@turns.demo", [{ decide_approval: { turn: id, approve: true, amount: null, reason: null } }], url);
  }
  let at = stageId("Notice", dbUrl);
  const move = async (to: string) => {
    const next = stageId(to, dbUrl);
    await mutate(pm, [{ edit_turn: { turn: id, edits: [{ stage: { from: at, to: next } }] } }], url);
    at = next;
  };
  if (psql(`SELECT requires_qc FROM turn_stages WHERE name = '${stage}'`, dbUrl) === "t") {
    await move("QC inspection");
    const items = psql(`SELECT string_agg(q.id::text, ',') FROM qc_checklist_items q JOIN turn_stages s ON s.id = q.stage_id
                         WHERE s.name = 'QC inspection' AND q.is_active`, dbUrl).split(",");
    await mutate("inspector@turns.demo", [{ record_qc: { turn: id, results: items.map((item) => ({ item, passed: true, note: null })) } }], url);
  }
  if (stage !== "Notice") await move(stage);
  setupDone(turnId, dbUrl ?? databaseUrl());
  return turnId;
}
