-- The local store, schema version 3: keeping what the server has, and knowing what a push
-- left in flight.
--
-- messages.error_message
--                the app's error text (the server's chat_messages.error_message). `error` stays
--                the flag clients set; the text is kept so a device's edit of the content
--                never replaces the app's text with a generic one.
-- held_rows      rows pulled from the remote that this store cannot hold as they are (the
--                server's schema accepts more than the store's checks: negative token counts,
--                'infinity' timestamps, ids longer than 255 characters…). Each is kept
--                whole, as JSON, with the reason, is shown in status, and is retried when the
--                remote row changes or its conversation arrives. A held row never blocks a
--                sync.
-- push_inflight  the rows of a push batch that has been sent and may have committed: written
--                before the remote commit, with the remote transaction id (xid8) and the
--                pushed version, and removed once the batch is marked. After a crash, the
--                next sync asks the remote whether that transaction committed, instead of
--                guessing from the rows it pulls.
-- pull_resume    a first (full) pull in progress: the snapshot it started from and the last
--                message id applied, so an interrupted first pull goes on where it stopped.

ALTER TABLE messages ADD COLUMN error_message TEXT;

CREATE TABLE held_rows (
    kind            TEXT NOT NULL CHECK (kind IN ('conversation', 'message')),
    id              TEXT NOT NULL,
    conversation_id TEXT,  -- for a message: its conversation, to retry it when that arrives
    reason          TEXT NOT NULL,
    remote_version  TEXT NOT NULL,  -- JSON of the row as pulled
    at              TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (kind, id)
);
CREATE INDEX held_rows_conversation ON held_rows (conversation_id)
    WHERE conversation_id IS NOT NULL;

CREATE TABLE push_inflight (
    kind    TEXT NOT NULL CHECK (kind IN ('conversation', 'message')),
    id      TEXT NOT NULL,
    rev     INTEGER NOT NULL,
    xid     TEXT NOT NULL,  -- the remote transaction (xid8 as text) that carried the row
    version TEXT NOT NULL,  -- JSON of the pushed row's compared columns
    PRIMARY KEY (kind, id)
);

CREATE TABLE pull_resume (
    user_id          TEXT PRIMARY KEY,
    horizon          TEXT NOT NULL,  -- the full pull's snapshot: the cursor once it is done
    after_message_id TEXT  -- messages are pulled in id order; NULL: none applied yet
);

-- error_message is a tracked, compared column like the others.
DROP TRIGGER messages_track_update;
CREATE TRIGGER messages_track_update
AFTER UPDATE OF id, conversation_id, role, content, model, total_tokens, input_tokens,
    output_tokens, user_message_id, content_type, elapsed_time, completion_id, timestamp, error,
    error_message
ON messages
WHEN (SELECT applying_remote FROM sync_meta) = 0
 AND (NEW.id IS NOT OLD.id OR NEW.conversation_id IS NOT OLD.conversation_id
      OR NEW.role IS NOT OLD.role OR NEW.content IS NOT OLD.content
      OR NEW.model IS NOT OLD.model OR NEW.total_tokens IS NOT OLD.total_tokens
      OR NEW.input_tokens IS NOT OLD.input_tokens OR NEW.output_tokens IS NOT OLD.output_tokens
      OR NEW.user_message_id IS NOT OLD.user_message_id
      OR NEW.content_type IS NOT OLD.content_type OR NEW.elapsed_time IS NOT OLD.elapsed_time
      OR NEW.completion_id IS NOT OLD.completion_id OR NEW.timestamp IS NOT OLD.timestamp
      OR NEW.error IS NOT OLD.error OR NEW.error_message IS NOT OLD.error_message)
BEGIN
    UPDATE sync_meta SET last_rev = last_rev + 1;
    UPDATE messages SET rev = (SELECT last_rev FROM sync_meta) WHERE id = NEW.id;
    INSERT OR REPLACE INTO tombstones (kind, id, user_id, rev)
    SELECT 'message', OLD.id, c.user_id, (SELECT last_rev FROM sync_meta)
    FROM conversations AS c
    WHERE NEW.id IS NOT OLD.id AND c.id = OLD.conversation_id AND c.user_id IS NOT NULL;
END;

DROP TRIGGER messages_keep_base_update;
CREATE TRIGGER messages_keep_base_update
AFTER UPDATE OF conversation_id, role, content, model, total_tokens, input_tokens,
    output_tokens, user_message_id, content_type, elapsed_time, completion_id, timestamp, error,
    error_message
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
            'timestamp', OLD.timestamp, 'error', OLD.error,
            'error_message', OLD.error_message));
END;

DROP TRIGGER messages_keep_base_delete;
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
            'timestamp', OLD.timestamp, 'error', OLD.error,
            'error_message', OLD.error_message));
END;

-- A clean conversation's base is kept on any tracked change, updated_at included (a new
-- message bumps it): a remote edit of the title then meets a base, and is taken rather than
-- overwritten by a push that changed nothing the remote compares.
DROP TRIGGER conversations_keep_base_update;
CREATE TRIGGER conversations_keep_base_update
AFTER UPDATE OF user_id, title, created_at, updated_at, is_active ON conversations
WHEN (SELECT applying_remote FROM sync_meta) = 0 AND OLD.rev = OLD.synced_rev
BEGIN
    DELETE FROM sync_base WHERE kind = 'conversation' AND id = OLD.id;
    INSERT INTO sync_base (kind, id, version) VALUES ('conversation', OLD.id,
        json_object('user_id', OLD.user_id, 'title', OLD.title, 'created_at', OLD.created_at,
                    'is_active', OLD.is_active));
END;
