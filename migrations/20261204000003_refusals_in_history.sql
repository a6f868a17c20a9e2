-- A refused change is part of its turn's story (who tried what, when, and why it was refused):
-- receipts say which turn a change was about, what it was and when it was made on the device.
-- No foreign key: a refused new turn's id names no row.
ALTER TABLE mutation_receipts
  ADD COLUMN turn_id     uuid,
  ADD COLUMN action      varchar(50),
  ADD COLUMN device_time timestamptz;
CREATE INDEX mutation_receipts_turn_idx ON mutation_receipts (turn_id, created_at)
  WHERE turn_id IS NOT NULL;
