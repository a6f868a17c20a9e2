-- The inbox: what each user is told (turn assigned, declined, approval needed, decided, waiting,
-- escalated, overdue). Written by the server in the same statement as the change that causes it
-- (or by the reminder job); each user's own rows are their `inbox` shape; emailed when SMTP is
-- configured.
CREATE TABLE notifications (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  version     integer NOT NULL DEFAULT 1,
  user_id     uuid NOT NULL REFERENCES users (id),
  turn_id     uuid REFERENCES turns (id),
  kind        varchar(40) NOT NULL,
  message     varchar(500) NOT NULL,
  -- Reminders, escalations and overdue notices are sent once per key and user.
  dedupe_key  varchar(200),
  read_at     timestamptz,
  emailed_at  timestamptz
);
CREATE UNIQUE INDEX notifications_once ON notifications (user_id, dedupe_key)
  WHERE dedupe_key IS NOT NULL;
CREATE INDEX notifications_user_idx ON notifications (user_id, created_at);
CREATE INDEX notifications_turn_kind_idx ON notifications (turn_id, kind);
-- The mailer's queue: what has not been emailed yet.
CREATE INDEX notifications_unsent_idx ON notifications (created_at) WHERE emailed_at IS NULL;

CREATE TRIGGER notifications_touch BEFORE UPDATE ON notifications
  FOR EACH ROW EXECUTE FUNCTION touch_row();
ALTER TABLE notifications REPLICA IDENTITY FULL;
ALTER PUBLICATION turns_sync ADD TABLE notifications;
