-- A cancelled turn is kept, with when, by whom and why; it is no longer active, so it leaves the
-- board and the devices' shapes, and the History page lists it.
ALTER TABLE turns
  ADD COLUMN cancelled_at  timestamptz,
  ADD COLUMN cancelled_by  uuid REFERENCES users (id),
  ADD COLUMN cancel_reason text,
  ADD CONSTRAINT turns_cancel_has_reason CHECK ((cancelled_at IS NULL) = (cancel_reason IS NULL)),
  ADD CONSTRAINT turns_cancelled_inactive CHECK (cancelled_at IS NULL OR NOT is_active);
CREATE INDEX turns_cancelled_idx ON turns (cancelled_at DESC) WHERE cancelled_at IS NOT NULL;
