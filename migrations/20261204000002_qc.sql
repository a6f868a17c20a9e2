-- Inspector QC: a checklist per stage (admin data, like the stages), every inspection kept, and
-- a stage gate: a turn enters a stage that requires QC only after passing it.
ALTER TABLE turn_stages ADD COLUMN requires_qc boolean NOT NULL DEFAULT false;

ALTER TABLE turns
  -- When the turn last passed QC (cleared when it goes back to earlier work).
  ADD COLUMN qc_passed_at timestamptz,
  -- What failed at the last QC, until it passes.
  ADD COLUMN qc_failures  text;

-- Turns completed before QC was recorded here passed whatever inspection they had.
UPDATE turns SET qc_passed_at = turn_completion_date::timestamptz
 WHERE turn_completion_date IS NOT NULL;

CREATE TABLE qc_checklist_items (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  version     integer NOT NULL DEFAULT 1,
  stage_id    uuid NOT NULL REFERENCES turn_stages (id),
  position    integer NOT NULL,
  label       varchar(200) NOT NULL,
  is_active   boolean NOT NULL DEFAULT true,
  created_by  uuid,
  updated_by  uuid,
  CONSTRAINT qc_checklist_items_label_not_blank CHECK (btrim(label) <> '')
);
CREATE INDEX qc_checklist_items_stage_idx ON qc_checklist_items (stage_id, position);

-- Each inspection as recorded: every item, passed or failed, with its label then and the note.
CREATE TABLE qc_inspections (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  created_at   timestamptz NOT NULL DEFAULT now(),
  turn_id      uuid NOT NULL REFERENCES turns (id),
  stage_id     uuid NOT NULL REFERENCES turn_stages (id),
  inspector_id uuid NOT NULL REFERENCES users (id),
  passed       boolean NOT NULL,
  results      jsonb NOT NULL,
  -- When the inspector recorded it on the device (offline in a vacant home, it is sent later).
  device_time  timestamptz,
  CONSTRAINT qc_inspections_results_list CHECK (jsonb_typeof(results) = 'array')
);
CREATE INDEX qc_inspections_turn_idx ON qc_inspections (turn_id, created_at);

CREATE TRIGGER qc_checklist_items_touch BEFORE UPDATE ON qc_checklist_items
  FOR EACH ROW EXECUTE FUNCTION touch_row();
ALTER TABLE qc_checklist_items REPLICA IDENTITY FULL;
ALTER PUBLICATION turns_sync ADD TABLE qc_checklist_items;
