-- Hardening after a security review.
--
-- 1. Secrets out of synced tables. `users` is published to the shape server, whose change log
--    (`sync_log`, and its in-memory tail) keeps whole rows: a password hash in `users` was copied
--    there on every change to a user, each login's `last_login` included. Credentials now live in
--    a table of their own that is never published, so no hash ever enters the change stream.
CREATE TABLE user_credentials (
  user_id       uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  password_hash varchar(255) NOT NULL,
  updated_at    timestamptz NOT NULL DEFAULT now()
);
INSERT INTO user_credentials (user_id, password_hash)
SELECT id, password_hash FROM users WHERE password_hash IS NOT NULL;
ALTER TABLE users DROP COLUMN password_hash;
-- What the log already copied goes too.
UPDATE sync_log
   SET new_row = new_row - 'password_hash', old_row = old_row - 'password_hash'
 WHERE new_row ? 'password_hash' OR old_row ? 'password_hash';

-- 2. Deactivation takes effect at once: a deactivated user's sessions end (and do not come back
--    if the user is reactivated; they log in again).
CREATE FUNCTION users_end_sessions_on_deactivation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM sessions WHERE user_id = NEW.id;
  RETURN NULL;
END;
$$;
CREATE TRIGGER users_deactivated AFTER UPDATE OF is_active ON users
  FOR EACH ROW WHEN (OLD.is_active AND NOT NEW.is_active)
  EXECUTE FUNCTION users_end_sessions_on_deactivation();

-- 3. Every session that ends (logout, expiry, deactivation, a new login) is announced, so the
--    servers end that session's open live requests and streams within moments instead of at
--    their next poll. The payload is the token's hash (as stored; never the token).
CREATE FUNCTION sessions_announce_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('turns_session_ended', OLD.token);
  RETURN NULL;
END;
$$;
CREATE TRIGGER sessions_ended AFTER DELETE ON sessions
  FOR EACH ROW EXECUTE FUNCTION sessions_announce_end();
