-- Password links: an admin gives a new user (or one who forgot their password) a link to set
-- their own, so no admin ever knows anyone's password. Only the token's hash is kept. A link
-- works once, for a day; a newer link for the same user replaces the older one.
CREATE TABLE password_links (
  token_hash  text PRIMARY KEY,
  user_id     uuid NOT NULL REFERENCES users (id),
  created_by  uuid NOT NULL REFERENCES users (id),
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz
);
-- At most one unused link per user (making a new one deletes the old, under the user's lock).
CREATE UNIQUE INDEX password_links_one_open ON password_links (user_id) WHERE used_at IS NULL;
