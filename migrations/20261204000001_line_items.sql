-- A turn's scope as line items, and the cost templates a scope starts from.
--
-- 1. Line items. The turn amount is their sum, written by the server with each scope change (in
--    the same transaction). A shape filters one table, so each line carries copies of the turn
--    columns the shapes are scoped by (its managers, its vendor, its approval state, whether it is
--    active and when it was completed), kept by triggers in the same transaction as the turn's
--    own change: a line moves in and out of a user's shape exactly when its turn does.
CREATE TABLE turn_line_items (
  id                     uuid PRIMARY KEY,
  created_at             timestamptz NOT NULL DEFAULT now(),
  updated_at             timestamptz NOT NULL DEFAULT now(),
  version                integer NOT NULL DEFAULT 1,
  turn_id                uuid NOT NULL REFERENCES turns (id),
  position               integer NOT NULL,
  category               varchar(50) NOT NULL,
  description            varchar(500) NOT NULL,
  quantity               numeric(10,2) NOT NULL,
  unit_cost              numeric(10,2) NOT NULL,
  -- The vendor doing this line, when it is not the turn's vendor.
  vendor_id              uuid REFERENCES vendors (id),
  created_by             uuid,
  updated_by             uuid,
  -- Copied from the turn (see above); never written directly.
  property_manager_id    uuid,
  sr_property_manager_id uuid,
  turn_vendor_id         uuid,
  approval_status        approval_status,
  turn_is_active         boolean NOT NULL DEFAULT true,
  turn_completion_date   date,
  CONSTRAINT turn_line_items_quantity_positive CHECK (quantity > 0),
  CONSTRAINT turn_line_items_unit_cost_non_negative CHECK (unit_cost >= 0),
  CONSTRAINT turn_line_items_category_not_blank CHECK (btrim(category) <> ''),
  CONSTRAINT turn_line_items_description_not_blank CHECK (btrim(description) <> '')
);
CREATE INDEX turn_line_items_turn_idx ON turn_line_items (turn_id, position);
CREATE INDEX turn_line_items_property_manager_idx ON turn_line_items (property_manager_id);
CREATE INDEX turn_line_items_sr_property_manager_idx ON turn_line_items (sr_property_manager_id);
CREATE INDEX turn_line_items_turn_vendor_idx ON turn_line_items (turn_vendor_id);

CREATE FUNCTION turn_line_items_copy_turn_scope() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  SELECT t.property_manager_id, t.sr_property_manager_id, t.vendor_id, t.approval_status,
         t.is_active, t.turn_completion_date
    INTO NEW.property_manager_id, NEW.sr_property_manager_id, NEW.turn_vendor_id,
         NEW.approval_status, NEW.turn_is_active, NEW.turn_completion_date
    FROM turns t WHERE t.id = NEW.turn_id;
  RETURN NEW;
END;
$$;
CREATE TRIGGER turn_line_items_turn_scope BEFORE INSERT OR UPDATE OF turn_id ON turn_line_items
  FOR EACH ROW EXECUTE FUNCTION turn_line_items_copy_turn_scope();

CREATE FUNCTION turns_push_scope_to_line_items() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE turn_line_items
     SET property_manager_id = NEW.property_manager_id,
         sr_property_manager_id = NEW.sr_property_manager_id,
         turn_vendor_id = NEW.vendor_id,
         approval_status = NEW.approval_status,
         turn_is_active = NEW.is_active,
         turn_completion_date = NEW.turn_completion_date
   WHERE turn_id = NEW.id;
  RETURN NULL;
END;
$$;
CREATE TRIGGER turns_scope_to_line_items
  AFTER UPDATE OF property_manager_id, sr_property_manager_id, vendor_id, approval_status,
                  is_active, turn_completion_date ON turns
  FOR EACH ROW
  WHEN (OLD.property_manager_id IS DISTINCT FROM NEW.property_manager_id
        OR OLD.sr_property_manager_id IS DISTINCT FROM NEW.sr_property_manager_id
        OR OLD.vendor_id IS DISTINCT FROM NEW.vendor_id
        OR OLD.approval_status IS DISTINCT FROM NEW.approval_status
        OR OLD.is_active IS DISTINCT FROM NEW.is_active
        OR OLD.turn_completion_date IS DISTINCT FROM NEW.turn_completion_date)
  EXECUTE FUNCTION turns_push_scope_to_line_items();

-- A turn's timeline reads the audit rows of its lines.
CREATE INDEX audit_logs_line_item_turn_idx
  ON audit_logs (((coalesce(after, before) ->> 'turn_id')))
  WHERE table_name = 'turn_line_items';

-- 2. Cost templates: a typical scope for homes of a size, copied into a turn with one tap and
--    then edited. Matched by bedrooms, bathrooms and floor area; the lines are a JSON list of
--    {category, description, quantity, unit_cost} (read whole, never queried by line).
CREATE TABLE cost_templates (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  version     integer NOT NULL DEFAULT 1,
  name        varchar(100) NOT NULL,
  bedrooms    numeric(3,1),
  bathrooms   numeric(3,1),
  min_sqft    integer,
  max_sqft    integer,
  items       jsonb NOT NULL DEFAULT '[]',
  is_active   boolean NOT NULL DEFAULT true,
  created_by  uuid,
  updated_by  uuid,
  CONSTRAINT cost_templates_name_not_blank CHECK (btrim(name) <> ''),
  CONSTRAINT cost_templates_items_list CHECK (jsonb_typeof(items) = 'array'),
  CONSTRAINT cost_templates_sqft_range CHECK (min_sqft IS NULL OR max_sqft IS NULL OR min_sqft <= max_sqft)
);

CREATE TRIGGER turn_line_items_touch BEFORE UPDATE ON turn_line_items
  FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE TRIGGER cost_templates_touch BEFORE UPDATE ON cost_templates
  FOR EACH ROW EXECUTE FUNCTION touch_row();

ALTER TABLE turn_line_items REPLICA IDENTITY FULL;
ALTER TABLE cost_templates REPLICA IDENTITY FULL;
ALTER PUBLICATION turns_sync ADD TABLE turn_line_items, cost_templates;
