-- When the decided approval was asked of its level: the dashboard's approval cycle time is
-- decided_at - asked_at. Taken from the turn (turns.awaiting_since) as the decision is recorded,
-- which the mutation handler does before it updates the turn; a writer that knows better (an
-- import, the demo data) may set it. Decisions recorded before this are left unknown.
ALTER TABLE approval_decisions ADD COLUMN asked_at timestamptz;

CREATE FUNCTION approval_decisions_asked_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.asked_at IS NULL THEN
    NEW.asked_at := (SELECT awaiting_since FROM turns WHERE id = NEW.turn_id);
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER approval_decisions_asked_at BEFORE INSERT ON approval_decisions
  FOR EACH ROW EXECUTE FUNCTION approval_decisions_asked_at();

-- The dashboard reads decisions by when they were made.
CREATE INDEX approval_decisions_decided_at_idx ON approval_decisions (decided_at);
CREATE INDEX turns_completion_date_idx ON turns (turn_completion_date) WHERE is_active;
