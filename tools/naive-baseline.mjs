// A naive reference server for the live fan-out benchmark: Postgres LISTEN/NOTIFY → answer every
// waiting long-poll of the Electric v1 protocol (one row's updates; no shapes, no auth, no log).
// Anything that calls itself a sync engine should beat it by a wide margin in the same run.
// Set-up (in a scratch database with a `turns` table):
//   CREATE FUNCTION bench_notify() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
//     PERFORM pg_notify('turns', json_build_object('id', NEW.id, 'turn_id', NEW.turn_id,
//       'wo_number', NEW.wo_number)::text); RETURN NEW; END $$;
//   CREATE TRIGGER bench_notify AFTER UPDATE ON turns FOR EACH ROW EXECUTE FUNCTION bench_notify();
// Run: node tools/naive-baseline.mjs DATABASE_URL   (`pg` from tools/package.json; listens on
// 127.0.0.1:3999). turns-shape-bench --only naive sets it up and runs it. (A copy of the team's
// ../shared/bench/naive-baseline.mjs, so that the benchmark runs from a clean clone.)
// Measured on this machine with a Rust load generator, 1,000 clients on one row, 30 updates:
// write → client p50 36 / p99 91 ms, ~28 KB RSS per waiting request.
import http from 'node:http'
import pg from 'pg'
const db = new pg.Client({ connectionString: process.argv[2] }); await db.connect()
let lsn = 100, log = [], waiting = []
await db.query('LISTEN turns')
db.on('notification', (n) => {
  const row = JSON.parse(n.payload); lsn++
  log.push({ off: `${lsn}_0`, msg: { key: `"public"."turns"/"${row.id}"`, value: row, headers: { operation: 'update', relation: ['public','turns'], lsn: String(lsn), op_position: 0, last: true } } })
  const w = waiting; waiting = []; for (const f of w) f()
})
const schema = JSON.stringify({ id: { type: 'uuid', pk_index: 0 }, turn_id: { type: 'text' }, wo_number: { type: 'text' } })
http.createServer(async (req, res) => {
  const q = Object.fromEntries(new URL(req.url, 'http://x').searchParams)
  const h = { 'content-type': 'application/json', 'electric-handle': 'h1' }
  if (q.offset === '-1') { const { rows } = await db.query('select * from turns where id = $1', [q.where.match(/'(.*)'/)[1]]); res.writeHead(200, { ...h, 'electric-offset': `${lsn}_0`, 'electric-schema': schema }); return res.end(JSON.stringify(rows.map((r) => ({ key: r.id, value: r, headers: { operation: 'insert' } })))) }
  const after = (o) => Number(o.split('_')[0])
  const send = () => { const msgs = log.filter((e) => after(e.off) > after(q.offset)); res.writeHead(200, { ...h, 'electric-offset': msgs.length ? msgs.at(-1).off : q.offset, 'electric-up-to-date': '', 'electric-cursor': '1', ...(q.live ? {} : { 'electric-schema': schema }) }); res.end(JSON.stringify([...msgs.map((e) => e.msg), { headers: { control: 'up-to-date' } }])) }
  if (q.live !== 'true' || log.some((e) => after(e.off) > after(q.offset))) return send()
  waiting.push(send)
}).listen(3999, '127.0.0.1', () => console.log('mock on 3999'))
