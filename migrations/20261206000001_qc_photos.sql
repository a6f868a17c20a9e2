-- QC photos: a photo taken for a checklist item ("Floors": the stain the inspector failed it
-- for) says which. Items are never deleted (deactivated), so the reference holds.
ALTER TABLE turn_photos ADD COLUMN qc_item_id uuid REFERENCES qc_checklist_items (id);
