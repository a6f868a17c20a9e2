-- More than one app instance on one database. One instance (the leader, holding an advisory lock)
-- reads the replication slot and writes `sync_log`; the others follow `sync_log`.
--
-- leader_term: raised by each new leader; the log writer stores only while the term is its own,
--   so an instance that lost the lock without noticing (a cut connection) cannot write after the
--   next leader has started (a fencing token).
-- seen_lsn: how far the leader has read the WAL, durable: every commit at or below it is in
--   `sync_log`. Followers use it for the barriers that join a snapshot to the log.
ALTER TABLE sync_state
  ADD COLUMN leader_term bigint NOT NULL DEFAULT 0,
  ADD COLUMN seen_lsn    bigint NOT NULL DEFAULT 0;
UPDATE sync_state SET seen_lsn = last_lsn;
