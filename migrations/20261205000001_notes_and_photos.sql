-- Field notes and photos on a turn: what the vendor (or the manager, or the inspector) saw and
-- did, written from the phone, often offline.
--
-- Like line items, each row carries copies of the turn columns the shapes are scoped by, kept by
-- the line items' triggers, so a note or photo enters and leaves a user's shape exactly when its
-- turn does.
CREATE TABLE turn_notes (
  id                     uuid PRIMARY KEY,
  created_at             timestamptz NOT NULL DEFAULT now(),
  updated_at             timestamptz NOT NULL DEFAULT now(),
  version                integer NOT NULL DEFAULT 1,
  turn_id                uuid NOT NULL REFERENCES turns (id),
  body                   varchar(2000) NOT NULL,
  author_id              uuid NOT NULL REFERENCES users (id),
  -- The author's name when written (the shape cannot join users).
  author_name            varchar(200) NOT NULL,
  -- When it was written by the device's clock (offline work reads in the order it was done).
  device_time            timestamptz,
  property_manager_id    uuid,
  sr_property_manager_id uuid,
  turn_vendor_id         uuid,
  approval_status        approval_status,
  turn_is_active         boolean NOT NULL DEFAULT true,
  turn_completion_date   date,
  CONSTRAINT turn_notes_body_not_blank CHECK (btrim(body) <> '')
);
CREATE INDEX turn_notes_turn_idx ON turn_notes (turn_id, created_at);

-- A photo's bytes are in the file store (`object_store`), under `photos/<turn>/<id>/…`; the row
-- says what they are. Rows are written only by the upload path, after the bytes are stored and
-- checked (`photo_uploads`).
CREATE TABLE turn_photos (
  id                     uuid PRIMARY KEY,
  created_at             timestamptz NOT NULL DEFAULT now(),
  updated_at             timestamptz NOT NULL DEFAULT now(),
  version                integer NOT NULL DEFAULT 1,
  turn_id                uuid NOT NULL REFERENCES turns (id),
  caption                varchar(200),
  content_type           varchar(50) NOT NULL,
  bytes                  integer NOT NULL,
  width                  integer NOT NULL,
  height                 integer NOT NULL,
  author_id              uuid NOT NULL REFERENCES users (id),
  author_name            varchar(200) NOT NULL,
  -- When it was taken, by the device's clock.
  device_time            timestamptz,
  property_manager_id    uuid,
  sr_property_manager_id uuid,
  turn_vendor_id         uuid,
  approval_status        approval_status,
  turn_is_active         boolean NOT NULL DEFAULT true,
  turn_completion_date   date
);
CREATE INDEX turn_photos_turn_idx ON turn_photos (turn_id, created_at);

-- Uploaded and checked bytes waiting to be attached to their turn (the upload's last step,
-- through the mutation path). Not replicated: nobody follows it.
CREATE TABLE photo_uploads (
  id           uuid PRIMARY KEY,
  created_at   timestamptz NOT NULL DEFAULT now(),
  turn_id      uuid NOT NULL REFERENCES turns (id),
  uploaded_by  uuid NOT NULL REFERENCES users (id),
  content_type varchar(50) NOT NULL,
  bytes        integer NOT NULL,
  width        integer NOT NULL,
  height       integer NOT NULL
);

CREATE TRIGGER turn_notes_turn_scope BEFORE INSERT OR UPDATE OF turn_id ON turn_notes
  FOR EACH ROW EXECUTE FUNCTION turn_line_items_copy_turn_scope();
CREATE TRIGGER turn_photos_turn_scope BEFORE INSERT OR UPDATE OF turn_id ON turn_photos
  FOR EACH ROW EXECUTE FUNCTION turn_line_items_copy_turn_scope();

-- The turn's scope columns now reach its notes and photos too.
CREATE OR REPLACE FUNCTION turns_push_scope_to_line_items() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE turn_line_items
     SET property_manager_id = NEW.property_manager_id,
         sr_property_manager_id = NEW.sr_property_manager_id,
         turn_vendor_id = NEW.vendor_id,
         approval_status = NEW.approval_status,
         turn_is_active = NEW.is_active,
         turn_completion_date = NEW.turn_completion_date
   WHERE turn_id = NEW.id;
  UPDATE turn_notes
     SET property_manager_id = NEW.property_manager_id,
         sr_property_manager_id = NEW.sr_property_manager_id,
         turn_vendor_id = NEW.vendor_id,
         approval_status = NEW.approval_status,
         turn_is_active = NEW.is_active,
         turn_completion_date = NEW.turn_completion_date
   WHERE turn_id = NEW.id;
  UPDATE turn_photos
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

-- A turn's timeline reads the audit rows of its notes and photos.
CREATE INDEX audit_logs_field_turn_idx
  ON audit_logs (((coalesce(after, before) ->> 'turn_id')))
  WHERE table_name IN ('turn_notes', 'turn_photos');

CREATE TRIGGER turn_notes_touch BEFORE UPDATE ON turn_notes
  FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE TRIGGER turn_photos_touch BEFORE UPDATE ON turn_photos
  FOR EACH ROW EXECUTE FUNCTION touch_row();

ALTER TABLE turn_notes REPLICA IDENTITY FULL;
ALTER TABLE turn_photos REPLICA IDENTITY FULL;
ALTER PUBLICATION turns_sync ADD TABLE turn_notes, turn_photos;
