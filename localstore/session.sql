-- The local store, schema version 4: the signed-in user's tokens, for the sync server.
--
-- A client signs in by writing its Supabase session here (or `chatsync sign-in` obtains
-- one); the daemon refreshes it before it expires and after the server answers 401, and
-- writes the rotated refresh token before it uses the new access token (the auth server
-- revokes a session whose refresh token is used twice). Direct mode (a DSN) needs none of
-- this, so the columns are NULL there.
--
-- refresh_refused  why the auth server refused to refresh the session for good (revoked,
--                  reused, user deleted): the device is signed out until someone signs in
--                  again. Local edits keep queueing meanwhile; nothing is dropped.

ALTER TABLE auth_session ADD COLUMN access_token TEXT;
ALTER TABLE auth_session ADD COLUMN refresh_token TEXT;
ALTER TABLE auth_session ADD COLUMN expires_at INTEGER
    CONSTRAINT "auth_session.expires_at must be Unix seconds"
    CHECK (expires_at IS NULL OR typeof(expires_at) = 'integer');
ALTER TABLE auth_session ADD COLUMN refresh_refused TEXT;
