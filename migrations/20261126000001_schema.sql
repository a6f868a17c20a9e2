-- Turns server schema: the design document's tables (users, sessions, properties, turn_stages,
-- turns) plus vendors, audit logs, approval decisions, thresholds and mutation receipts.
--
-- Conventions (why):
-- * Every mutable table has the base columns id/created_at/updated_at/version and the audit
--   columns created_by/updated_by. `version` is bumped and `updated_at` set by one trigger, so
--   optimistic locking works whoever writes (our server, psql, a migration).
-- * Timestamps are timestamptz (the design sketch used timestamp): instants from devices in
--   different time zones must compare correctly.
-- * Money is numeric(10,2); the Rust side maps it to rust_decimal, never f64.
-- * Constraint names are part of the API: the server maps violations to field messages by name.

CREATE TYPE user_role AS ENUM (
  'SUPER_ADMIN', 'ADMIN', 'PROPERTY_MANAGER', 'SR_PROPERTY_MANAGER', 'VENDOR',
  'INSPECTOR', 'DFO_APPROVER', 'HO_APPROVER', 'USER'
);

CREATE TYPE approval_status AS ENUM (
  'PENDING', 'DFO_APPROVAL_NEEDED', 'DFO_APPROVED', 'HO_APPROVAL_NEEDED', 'HO_APPROVED', 'REJECTED'
);

CREATE TYPE approval_level AS ENUM ('DFO', 'HO');
CREATE TYPE approval_decision AS ENUM ('APPROVED', 'REJECTED');

-- One trigger function for every table with base columns.
CREATE FUNCTION touch_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  NEW.version := OLD.version + 1;
  RETURN NEW;
END;
$$;

CREATE TABLE vendors (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  version       integer NOT NULL DEFAULT 1,
  name          varchar(255) NOT NULL,
  trade         varchar(100),
  contact_email varchar(255),
  contact_phone varchar(20),
  is_active     boolean NOT NULL DEFAULT true,
  is_approved   boolean NOT NULL DEFAULT false,
  created_by    uuid,
  updated_by    uuid,
  CONSTRAINT vendors_name_key UNIQUE (name),
  CONSTRAINT vendors_name_not_blank CHECK (btrim(name) <> '')
);
CREATE INDEX vendors_active_approved_idx ON vendors (is_active, is_approved);

CREATE TABLE users (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  version        integer NOT NULL DEFAULT 1,
  email          varchar(255) NOT NULL,
  password_hash  varchar(255),
  first_name     varchar(100),
  last_name      varchar(100),
  phone          varchar(20),
  role           user_role NOT NULL DEFAULT 'USER',
  is_active      boolean NOT NULL DEFAULT true,
  email_verified boolean NOT NULL DEFAULT false,
  last_login     timestamptz,
  -- A VENDOR user works for exactly one vendor company; nobody else has one.
  vendor_id      uuid REFERENCES vendors (id),
  created_by     uuid,
  updated_by     uuid,
  -- Emails are stored trimmed and lower-case so uniqueness is case-insensitive.
  CONSTRAINT users_email_normalized CHECK (email = lower(btrim(email)) AND email LIKE '%_@_%'),
  CONSTRAINT users_vendor_matches_role CHECK ((role = 'VENDOR') = (vendor_id IS NOT NULL))
);
CREATE UNIQUE INDEX users_email_idx ON users (email);
CREATE INDEX users_role_idx ON users (role);
CREATE INDEX users_is_active_idx ON users (is_active);
CREATE INDEX users_vendor_id_idx ON users (vendor_id);

CREATE TABLE sessions (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  version    integer NOT NULL DEFAULT 1,
  user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  -- SHA-256 (hex) of the session token; the token itself lives only in the user's cookie.
  token      varchar(255) NOT NULL,
  expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE UNIQUE INDEX sessions_token_idx ON sessions (token);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

CREATE TABLE properties (
  id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  created_at             timestamptz NOT NULL DEFAULT now(),
  updated_at             timestamptz NOT NULL DEFAULT now(),
  version                integer NOT NULL DEFAULT 1,
  property_id            varchar(50) NOT NULL,
  name                   varchar(255) NOT NULL,
  street_address         varchar(255) NOT NULL,
  city                   varchar(100),
  state                  varchar(50),
  zip_code               varchar(20),
  country                varchar(100) DEFAULT 'United States',
  year_built             integer,
  area_sqft              integer,
  bedrooms               numeric(3,1),
  bathrooms              numeric(3,1),
  is_active              boolean NOT NULL DEFAULT true,
  is_core                boolean NOT NULL DEFAULT true,
  property_manager_id    uuid REFERENCES users (id),
  sr_property_manager_id uuid REFERENCES users (id),
  created_by             uuid,
  updated_by             uuid,
  CONSTRAINT properties_name_not_blank CHECK (btrim(name) <> ''),
  CONSTRAINT properties_year_built_range CHECK (year_built IS NULL OR year_built BETWEEN 1700 AND 2200),
  CONSTRAINT properties_area_positive CHECK (area_sqft IS NULL OR area_sqft > 0),
  CONSTRAINT properties_rooms_non_negative CHECK (coalesce(bedrooms, 0) >= 0 AND coalesce(bathrooms, 0) >= 0)
);
CREATE UNIQUE INDEX properties_property_id_idx ON properties (property_id);
CREATE INDEX properties_is_active_idx ON properties (is_active);
CREATE INDEX properties_manager_idx ON properties (property_manager_id);
CREATE INDEX idx_properties_manager ON properties (property_manager_id, is_active);
CREATE INDEX properties_sr_manager_idx ON properties (sr_property_manager_id);

CREATE TABLE turn_stages (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  version            integer NOT NULL DEFAULT 1,
  name               varchar(100) NOT NULL,
  display_order      integer NOT NULL,
  color              varchar(7) DEFAULT '#000000',
  is_amount_required boolean NOT NULL DEFAULT false,
  is_vendor_required boolean NOT NULL DEFAULT false,
  requires_approval  boolean NOT NULL DEFAULT false,
  is_complete_stage  boolean NOT NULL DEFAULT false,
  is_active          boolean NOT NULL DEFAULT true,
  created_by         uuid,
  updated_by         uuid,
  CONSTRAINT turn_stages_display_order_key UNIQUE (display_order),
  CONSTRAINT turn_stages_color_hex CHECK (color IS NULL OR color ~ '^#[0-9A-Fa-f]{6}$')
);

CREATE TABLE turns (
  id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  created_at               timestamptz NOT NULL DEFAULT now(),
  updated_at               timestamptz NOT NULL DEFAULT now(),
  version                  integer NOT NULL DEFAULT 1,
  turn_id                  varchar(50) NOT NULL,
  property_id              uuid NOT NULL REFERENCES properties (id),
  stage_id                 uuid NOT NULL REFERENCES turn_stages (id),
  wo_number                varchar(50),
  move_out_date            date,
  turn_amount              numeric(10,2),
  approved_turn_amount     numeric(10,2),
  vendor_id                uuid REFERENCES vendors (id),
  expected_completion_date date,
  turn_completion_date     date,
  -- NOT NULL where the sketch left it nullable: every turn is somewhere in the approval flow.
  approval_status          approval_status NOT NULL DEFAULT 'PENDING',
  is_active                boolean NOT NULL DEFAULT true,
  created_by               uuid,
  updated_by               uuid,
  CONSTRAINT turns_amount_non_negative CHECK (turn_amount IS NULL OR turn_amount >= 0),
  CONSTRAINT turns_approved_amount_non_negative CHECK (approved_turn_amount IS NULL OR approved_turn_amount >= 0),
  CONSTRAINT turns_completion_after_move_out CHECK (
    turn_completion_date IS NULL OR move_out_date IS NULL OR turn_completion_date >= move_out_date)
);
CREATE UNIQUE INDEX turns_turn_id_idx ON turns (turn_id);
CREATE INDEX turns_property_id_idx ON turns (property_id);
CREATE INDEX turns_stage_id_idx ON turns (stage_id);
CREATE INDEX turns_is_active_idx ON turns (is_active);
CREATE INDEX idx_turns_active ON turns (is_active, stage_id);
CREATE INDEX turns_vendor_id_idx ON turns (vendor_id);
CREATE INDEX turns_approval_status_idx ON turns (approval_status) WHERE approval_status IN ('DFO_APPROVAL_NEEDED', 'HO_APPROVAL_NEEDED');

-- One turn may loop through approval several times; each decision is kept.
CREATE TABLE approval_decisions (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  version     integer NOT NULL DEFAULT 1,
  turn_id     uuid NOT NULL REFERENCES turns (id),
  level       approval_level NOT NULL,
  decision    approval_decision NOT NULL,
  amount      numeric(10,2),
  reason      text,
  actor_id    uuid NOT NULL REFERENCES users (id),
  actor_role  user_role NOT NULL,
  decided_at  timestamptz NOT NULL DEFAULT now(),
  -- When the approver decided on the device (may be earlier than decided_at if made offline).
  device_time timestamptz,
  created_by  uuid,
  updated_by  uuid,
  CONSTRAINT approval_decisions_reason_required CHECK (decision <> 'REJECTED' OR btrim(coalesce(reason, '')) <> ''),
  CONSTRAINT approval_decisions_amount_non_negative CHECK (amount IS NULL OR amount >= 0)
);
CREATE INDEX approval_decisions_turn_idx ON approval_decisions (turn_id, decided_at);

-- The admin-editable approval limits: exactly one row.
CREATE TABLE approval_thresholds (
  id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  version               integer NOT NULL DEFAULT 1,
  pm_self_approve_limit numeric(10,2) NOT NULL DEFAULT 1000,
  ho_threshold          numeric(10,2) NOT NULL DEFAULT 5000,
  non_core_threshold    numeric(10,2) NOT NULL DEFAULT 1000,
  change_tolerance_pct  numeric(5,2) NOT NULL DEFAULT 10,
  created_by            uuid,
  updated_by            uuid,
  CONSTRAINT approval_thresholds_ordered CHECK (
    0 <= pm_self_approve_limit AND pm_self_approve_limit <= ho_threshold AND non_core_threshold >= 0),
  CONSTRAINT approval_thresholds_tolerance_range CHECK (change_tolerance_pct BETWEEN 0 AND 100)
);
CREATE UNIQUE INDEX approval_thresholds_singleton ON approval_thresholds ((true));
INSERT INTO approval_thresholds DEFAULT VALUES;

-- Append-only history of every write, with the device's clock next to the server's.
CREATE TABLE audit_logs (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  created_at         timestamptz NOT NULL DEFAULT now(),
  actor_id           uuid REFERENCES users (id),
  action             varchar(50) NOT NULL,
  table_name         varchar(63) NOT NULL,
  row_id             uuid,
  before             jsonb,
  after              jsonb,
  device_time        timestamptz,
  client_mutation_id uuid
);
CREATE INDEX audit_logs_row_idx ON audit_logs (table_name, row_id, created_at);
CREATE INDEX audit_logs_actor_idx ON audit_logs (actor_id, created_at);
CREATE INDEX audit_logs_mutation_idx ON audit_logs (client_mutation_id);

-- One row per client mutation id: a replayed mutation returns the stored outcome, applies nothing.
CREATE TABLE mutation_receipts (
  mutation_id uuid PRIMARY KEY,
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  outcome     jsonb NOT NULL,
  txid        bigint,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mutation_receipts_user_idx ON mutation_receipts (user_id, created_at);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['vendors', 'users', 'sessions', 'properties', 'turn_stages', 'turns',
                           'approval_decisions', 'approval_thresholds'] LOOP
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION touch_row()',
                   t || '_touch', t);
  END LOOP;
END;
$$;

-- Synced tables: full old rows in the WAL (deletes and unchanged TOAST values need them), and one
-- publication the shape server's replication slot reads.
ALTER TABLE users REPLICA IDENTITY FULL;
ALTER TABLE vendors REPLICA IDENTITY FULL;
ALTER TABLE properties REPLICA IDENTITY FULL;
ALTER TABLE turn_stages REPLICA IDENTITY FULL;
ALTER TABLE turns REPLICA IDENTITY FULL;
ALTER TABLE approval_decisions REPLICA IDENTITY FULL;
ALTER TABLE approval_thresholds REPLICA IDENTITY FULL;
CREATE PUBLICATION turns_sync FOR TABLE
  users, vendors, properties, turn_stages, turns, approval_decisions, approval_thresholds;
