// Direct database access for tests: setting up rows and checking what landed, with psql.
import { execFileSync } from "node:child_process";
import { databaseUrl } from "../playwright.config";

export const psql = (sql: string, url = databaseUrl()) =>
  execFileSync("psql", [url, "-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql], { encoding: "utf8" }).trim();

export type TurnSetup = { pm?: string; stage?: string; amount?: number; status?: string; vendor?: string };

/** A new turn on one of a manager's core properties (as another system or user would add it). */
export function makeTurn(turnId: string, opts: TurnSetup = {}, url = databaseUrl()) {
  const vendor = opts.vendor ? `(SELECT id FROM vendors WHERE name = '${opts.vendor}')` : "NULL";
  psql(
    `INSERT INTO turns (turn_id, property_id, stage_id, move_out_date, turn_amount, approval_status, vendor_id)
     SELECT '${turnId}', p.id, s.id, current_date - 3, ${opts.amount ?? "NULL"}, '${opts.status ?? "PENDING"}', ${vendor}
       FROM properties p JOIN users u ON u.id = p.property_manager_id, turn_stages s
      WHERE u.email = '${opts.pm ?? "pm@turns.demo"}' AND p.is_core AND s.name = '${opts.stage ?? "Notice"}'
      ORDER BY p.property_id LIMIT 1`,
    url,
  );
  return turnId;
}

/** One column of a turn, as text. */
export const turnField = (turnId: string, column: string, url = databaseUrl()) =>
  psql(`SELECT coalesce(${column}::text, '') FROM turns WHERE turn_id = '${turnId}'`, url);

/** How many audit rows and receipts the writes to a turn left. */
export const writesTo = (turnId: string, url = databaseUrl()) =>
  Number(psql(`SELECT count(*) FROM audit_logs a JOIN turns t ON t.id = a.row_id WHERE t.turn_id = '${turnId}'`, url));

/** Applied mutations (receipts) whose audit rows touch a turn. */
export const receiptsFor = (turnId: string, url = databaseUrl()) =>
  Number(psql(`SELECT count(DISTINCT r.mutation_id) FROM mutation_receipts r
                 JOIN audit_logs a ON a.client_mutation_id = r.mutation_id
                 JOIN turns t ON t.id = a.row_id
                WHERE t.turn_id = '${turnId}'`, url));
