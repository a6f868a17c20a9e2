-- Shape server support.
--
-- 1. Scope columns on turns. Shapes are single-table filters, but a PM's turns are defined by the
--    turn's *property*. Copying the property's PM and senior PM onto each turn (kept in sync by
--    triggers, in the same transaction) makes "the turns a PM may read" a plain where clause, and a
--    property reassigned to another PM updates its turns, so they move out of one PM's shape and
--    into the other's through the ordinary change stream.
ALTER TABLE turns
  ADD COLUMN property_manager_id uuid REFERENCES users (id),
  ADD COLUMN sr_property_manager_id uuid REFERENCES users (id);

UPDATE turns t
   SET property_manager_id = p.property_manager_id, sr_property_manager_id = p.sr_property_manager_id
  FROM properties p
 WHERE p.id = t.property_id;

CREATE FUNCTION turns_copy_property_scope() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  SELECT p.property_manager_id, p.sr_property_manager_id
    INTO NEW.property_manager_id, NEW.sr_property_manager_id
    FROM properties p WHERE p.id = NEW.property_id;
  RETURN NEW;
END;
$$;
CREATE TRIGGER turns_property_scope BEFORE INSERT OR UPDATE OF property_id ON turns
  FOR EACH ROW EXECUTE FUNCTION turns_copy_property_scope();

CREATE FUNCTION properties_push_scope() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE turns
     SET property_manager_id = NEW.property_manager_id,
         sr_property_manager_id = NEW.sr_property_manager_id
   WHERE property_id = NEW.id;
  RETURN NULL;
END;
$$;
CREATE TRIGGER properties_scope_to_turns AFTER UPDATE OF property_manager_id, sr_property_manager_id ON properties
  FOR EACH ROW
  WHEN (OLD.property_manager_id IS DISTINCT FROM NEW.property_manager_id
        OR OLD.sr_property_manager_id IS DISTINCT FROM NEW.sr_property_manager_id)
  EXECUTE FUNCTION properties_push_scope();

CREATE INDEX turns_property_manager_idx ON turns (property_manager_id);
CREATE INDEX turns_sr_property_manager_idx ON turns (sr_property_manager_id);

-- 2. The change log shapes are served from: every committed change to a published table, once,
--    in commit order, keyed by the shape protocol's offset (commit LSN, position in the
--    transaction). Kept in Postgres (not on local disk) so it survives restarts and redeploys of
--    stateless app servers (a managed Postgres such as Neon is the only durable store there), and
--    any server instance can serve any client. Not published itself, so it never loops.
CREATE TABLE sync_log (
  lsn       bigint NOT NULL,
  op        integer NOT NULL,
  xid       bigint NOT NULL,
  relation  text NOT NULL,
  operation text NOT NULL,
  new_row   jsonb,
  old_row   jsonb,
  PRIMARY KEY (lsn, op),
  CONSTRAINT sync_log_operation CHECK (operation IN ('insert', 'update', 'delete'))
);

-- One row: the replication position stored with the log (exactly once: a commit at or below it
-- is skipped after a restart), and the log's identity — a new epoch (slot lost and recreated, log
-- reset) invalidates every shape handle, which then answers 409 must-refetch.
CREATE TABLE sync_state (
  singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  epoch      uuid NOT NULL DEFAULT gen_random_uuid(),
  last_lsn   bigint NOT NULL DEFAULT 0,
  -- Offsets below this were trimmed from the log.
  floor_lsn  bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO sync_state DEFAULT VALUES;

-- Shape handles: a shape definition with the snapshot its initial rows came from. Stored so that
-- clients resume after a server restart without a 409.
CREATE TABLE shape_handles (
  handle        text PRIMARY KEY,
  epoch         uuid NOT NULL,
  definition    jsonb NOT NULL,
  snapshot_xmin bigint NOT NULL,
  snapshot_xmax bigint NOT NULL,
  snapshot_xip  bigint[] NOT NULL,
  start_lsn     bigint NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_used_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shape_handles_last_used_idx ON shape_handles (last_used_at);
