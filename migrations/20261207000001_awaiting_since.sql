-- When the turn's approval was last asked of the level it waits for: the approver's queue sorts
-- by it and shows how long each item has waited. A trigger, not the mutation handler, keeps it,
-- so every writer (the app, the generator, an import, a hand-run UPDATE) keeps it true: it is set
-- when the turn starts waiting for a level (a DFO approval that goes on to head office starts a
-- new wait) and cleared when it waits for no one.
ALTER TABLE turns ADD COLUMN awaiting_since timestamptz;

CREATE FUNCTION turns_awaiting_since() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.approval_status NOT IN ('DFO_APPROVAL_NEEDED', 'HO_APPROVAL_NEEDED') THEN
    NEW.awaiting_since := NULL;
  ELSIF TG_OP = 'INSERT' THEN
    NEW.awaiting_since := coalesce(NEW.awaiting_since, now());
  ELSIF NEW.approval_status IS DISTINCT FROM OLD.approval_status THEN
    NEW.awaiting_since := now();
  ELSE
    NEW.awaiting_since := coalesce(OLD.awaiting_since, now());
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER turns_awaiting_since BEFORE INSERT OR UPDATE OF approval_status ON turns
  FOR EACH ROW EXECUTE FUNCTION turns_awaiting_since();

-- Turns already waiting: since the last notice that asked for their approval, else their last
-- change.
UPDATE turns t SET awaiting_since = coalesce(
    (SELECT max(n.created_at) FROM notifications n
      WHERE n.turn_id = t.id AND n.kind = 'approval_needed'),
    t.updated_at)
 WHERE t.approval_status IN ('DFO_APPROVAL_NEEDED', 'HO_APPROVAL_NEEDED');
