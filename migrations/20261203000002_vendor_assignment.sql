-- A vendor accepts the work they are given, or declines it with a reason: a declined turn goes
-- back to its managers without a vendor, with who declined and why, until another is assigned.
ALTER TABLE turns
  ADD COLUMN vendor_accepted_at timestamptz,
  ADD COLUMN declined_vendor_id uuid REFERENCES vendors (id),
  ADD COLUMN decline_reason     text,
  ADD CONSTRAINT turns_accepted_has_vendor CHECK (vendor_accepted_at IS NULL OR vendor_id IS NOT NULL),
  ADD CONSTRAINT turns_decline_has_reason CHECK ((declined_vendor_id IS NULL) = (decline_reason IS NULL));
