-- The local store, schema version 2: what pulling from the remote needs.
--
-- pull_cursor    per signed-in user, the remote snapshot (pg_snapshot text: xmin:xmax:xip)
--                of the last pull: every change that snapshot saw is already here (see
--                remote/migrations/0004_change_feed.sql and remote/pull.py)
-- conflicts      one row per conflict the pull resolved, with both versions, for status
-- server_conversation_stats
--                the server-derived figures of each conversation (message count, tokens,
--                preview, last model, server times). Not client data: no trigger tracks this
--                table, so it is never pushed.
-- sync_base      for a row edited locally after it was last in agreement with the remote,
--                that agreed version (JSON). It tells a pulled echo of our own push, or a
--                server-side stats refresh, from another device's edit.

CREATE TABLE pull_cursor (
    user_id   TEXT PRIMARY KEY,
    snapshot  TEXT NOT NULL,
    pulled_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE conflicts (
    n              INTEGER PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('conversation', 'message')),
    id             TEXT NOT NULL,
    -- local-edit-kept: both edited; the local edit is pushed over the server's version
    -- deleted-remotely: edited here, deleted elsewhere; deletion wins, the row is removed
    -- deleted-locally: deleted here, edited elsewhere; deletion wins, the delete is pushed
    resolution     TEXT NOT NULL
        CHECK (resolution IN ('local-edit-kept', 'deleted-remotely', 'deleted-locally')),
    local_version  TEXT,  -- JSON of the local row (NULL when deleted here)
    remote_version TEXT,  -- JSON of the remote row (NULL when deleted there)
    at             TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE server_conversation_stats (
    conversation_id        TEXT PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
    message_count          INTEGER NOT NULL DEFAULT 0,
    total_tokens           INTEGER NOT NULL DEFAULT 0,
    last_model             TEXT,
    last_message_preview   TEXT,
    last_message_timestamp TEXT,
    server_updated_at      TEXT,
    last_activity          TEXT
);

CREATE VIEW conversations_with_server_stats AS
SELECT c.id, c.user_id, c.title, c.created_at, c.updated_at, c.is_active,
       s.message_count, s.total_tokens, s.last_model, s.last_message_preview,
       s.last_message_timestamp, s.server_updated_at, s.last_activity
FROM conversations AS c
LEFT JOIN server_conversation_stats AS s ON s.conversation_id = c.id;

CREATE TABLE sync_base (
    kind    TEXT NOT NULL CHECK (kind IN ('conversation', 'message')),
    id      TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);

-- A clean row (rev = synced_rev) is what the remote had when we last agreed: keep it when a
-- client first changes or deletes the row. Skipped for the sync engine's own writes.
-- (DELETE then INSERT, not INSERT OR REPLACE: inside a trigger the outer statement's
-- conflict clause would override OR REPLACE, and a client's UPSERT would then fail.)
CREATE TRIGGER conversations_keep_base_update
AFTER UPDATE OF user_id, title, created_at, is_active ON conversations
WHEN (SELECT applying_remote FROM sync_meta) = 0 AND OLD.rev = OLD.synced_rev
BEGIN
    DELETE FROM sync_base WHERE kind = 'conversation' AND id = OLD.id;
    INSERT INTO sync_base (kind, id, version) VALUES ('conversation', OLD.id,
        json_object('user_id', OLD.user_id, 'title', OLD.title, 'created_at', OLD.created_at,
                    'is_active', OLD.is_active));
END;

CREATE TRIGGER conversations_keep_base_delete AFTER DELETE ON conversations
WHEN (SELECT applying_remote FROM sync_meta) = 0 AND OLD.rev = OLD.synced_rev
 AND OLD.user_id IS NOT NULL
BEGIN
    DELETE FROM sync_base WHERE kind = 'conversation' AND id = OLD.id;
    INSERT INTO sync_base (kind, id, version) VALUES ('conversation', OLD.id,
        json_object('user_id', OLD.user_id, 'title', OLD.title, 'created_at', OLD.created_at,
                    'is_active', OLD.is_active));
END;

CREATE TRIGGER messages_keep_base_update
AFTER UPDATE OF conversation_id, role, content, model, total_tokens, input_tokens,
    output_tokens, user_message_id, content_type, elapsed_time, completion_id, timestamp, error
ON messages
WHEN (SELECT applying_remote FROM sync_meta) = 0 AND OLD.rev = OLD.synced_rev
BEGIN
    DELETE FROM sync_base WHERE kind = 'message' AND id = OLD.id;
    INSERT INTO sync_base (kind, id, version) VALUES ('message', OLD.id,
        json_object('conversation_id', OLD.conversation_id, 'role', OLD.role,
            'content', OLD.content, 'model', OLD.model, 'total_tokens', OLD.total_tokens,
            'input_tokens', OLD.input_tokens, 'output_tokens', OLD.output_tokens,
            'user_message_id', OLD.user_message_id, 'content_type', OLD.content_type,
            'elapsed_time', OLD.elapsed_time, 'completion_id', OLD.completion_id,
            'timestamp', OLD.timestamp, 'error', OLD.error));
END;

-- Only a message deleted on its own: one that goes with its conversation is covered by the
-- conversation (the parent row is already gone when the cascade runs).
CREATE TRIGGER messages_keep_base_delete AFTER DELETE ON messages
WHEN (SELECT applying_remote FROM sync_meta) = 0 AND OLD.rev = OLD.synced_rev
 AND EXISTS (SELECT 1 FROM conversations WHERE id = OLD.conversation_id)
BEGIN
    DELETE FROM sync_base WHERE kind = 'message' AND id = OLD.id;
    INSERT INTO sync_base (kind, id, version) VALUES ('message', OLD.id,
        json_object('conversation_id', OLD.conversation_id, 'role', OLD.role,
            'content', OLD.content, 'model', OLD.model, 'total_tokens', OLD.total_tokens,
            'input_tokens', OLD.input_tokens, 'output_tokens', OLD.output_tokens,
            'user_message_id', OLD.user_message_id, 'content_type', OLD.content_type,
            'elapsed_time', OLD.elapsed_time, 'completion_id', OLD.completion_id,
            'timestamp', OLD.timestamp, 'error', OLD.error));
END;

-- Agreement again (a push acknowledged, a delete acknowledged): the base is no longer needed.
CREATE TRIGGER conversations_drop_base AFTER UPDATE OF synced_rev ON conversations
WHEN NEW.synced_rev = NEW.rev
BEGIN
    DELETE FROM sync_base WHERE kind = 'conversation' AND id = NEW.id;
END;

CREATE TRIGGER messages_drop_base AFTER UPDATE OF synced_rev ON messages
WHEN NEW.synced_rev = NEW.rev
BEGIN
    DELETE FROM sync_base WHERE kind = 'message' AND id = NEW.id;
END;

CREATE TRIGGER tombstones_drop_base AFTER DELETE ON tombstones
BEGIN
    DELETE FROM sync_base WHERE kind = OLD.kind AND id = OLD.id;
END;
