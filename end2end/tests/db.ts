// Direct database access for tests: setting up rows and checking what landed, with psql.
import { execFileSync } from "node:child_process";
import { databaseUrl } from "../playwright.config";

export const psql = (sql: string, url = databaseUrl()) =>
  execFileSync("psql", [url, "-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql], { encoding: "utf8" }).trim();

/** One column of a turn, as text. */
export const turnField = (turnId: string, column: string, url = databaseUrl()) =>
  psql(`SELECT coalesce(${column}::text, '') FROM turns WHERE turn_id = '${turnId}'`, url);

// What a turn's setup wrote (startTurn goes through the app, and leaves audit rows and receipts
// as any user's work does): the counts below are what the test itself wrote after it.
const atSetup = new Map<string, { writes: number; receipts: number }>();

const auditRows = (turnId: string, url: string) =>
  Number(psql(`SELECT count(*) FROM audit_logs a JOIN turns t ON t.id = a.row_id WHERE t.turn_id = '${turnId}'`, url));

const receiptRows = (turnId: string, url: string) =>
  Number(psql(`SELECT count(DISTINCT r.mutation_id) FROM mutation_receipts r
                 JOIN audit_logs a ON a.client_mutation_id = r.mutation_id
                 JOIN turns t ON t.id = a.row_id
                WHERE t.turn_id = '${turnId}'`, url));

/** Marks the end of a turn's setup: writesTo and receiptsFor count from here. */
export function setupDone(turnId: string, url = databaseUrl()) {
  atSetup.set(url + turnId, { writes: auditRows(turnId, url), receipts: receiptRows(turnId, url) });
}

/** How many audit rows the writes to a turn left since its setup. */
export const writesTo = (turnId: string, url = databaseUrl()) =>
  auditRows(turnId, url) - (atSetup.get(url + turnId)?.writes ?? 0);

/** Applied mutations (receipts) whose audit rows touch a turn, since its setup. */
export const receiptsFor = (turnId: string, url = databaseUrl()) =>
  receiptRows(turnId, url) - (atSetup.get(url + turnId)?.receipts ?? 0);
