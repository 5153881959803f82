-- The local store, schema version 5: a push in flight records its rows' versions only when
-- they are needed.
--
-- push_inflight.version is now NULL for a row still as it was pushed: the row is then at
-- the recorded rev, and since every change of a pushed column moves rev, its current
-- values are the pushed version. Version 3 wrote every pushed row's columns as JSON before
-- the remote COMMIT and deleted them after it: for a batch of long messages megabytes
-- written twice, while the version is needed only for a row edited or deleted while its
-- push is in flight (it becomes that row's merge base, localstore/inflight.py).
--
-- The triggers below keep that true: when a row with such an entry is updated, deleted,
-- or replaced by an INSERT OR REPLACE (which deletes without firing delete triggers), the
-- old values are written into the entry first. They fire for every writer, the engine's
-- pulled rows included, and do nothing when no push is in flight (one index probe).

CREATE TABLE push_inflight_v5 (
    kind    TEXT NOT NULL CHECK (kind IN ('conversation', 'message')),
    id      TEXT NOT NULL,
    rev     INTEGER NOT NULL,
    xid     TEXT NOT NULL,  -- the remote transaction (xid8 as text) that carried the row
    -- JSON of the pushed row's compared columns; NULL: the row at rev is the version
    version TEXT,
    PRIMARY KEY (kind, id)
);
INSERT INTO push_inflight_v5 (kind, id, rev, xid, version)
SELECT kind, id, rev, xid, version FROM push_inflight;
DROP TABLE push_inflight;
ALTER TABLE push_inflight_v5 RENAME TO push_inflight;

CREATE TRIGGER conversations_inflight_update
AFTER UPDATE OF id, user_id, title, created_at, updated_at, is_active ON conversations
WHEN EXISTS (SELECT 1 FROM push_inflight
             WHERE kind = 'conversation' AND id = OLD.id AND rev = OLD.rev AND version IS NULL)
BEGIN
    UPDATE push_inflight SET version = json_object('user_id', OLD.user_id,
        'title', OLD.title, 'created_at', OLD.created_at, 'is_active', OLD.is_active)
    WHERE kind = 'conversation' AND id = OLD.id AND rev = OLD.rev AND version IS NULL;
END;

CREATE TRIGGER conversations_inflight_delete AFTER DELETE ON conversations
WHEN EXISTS (SELECT 1 FROM push_inflight
             WHERE kind = 'conversation' AND id = OLD.id AND rev = OLD.rev AND version IS NULL)
BEGIN
    UPDATE push_inflight SET version = json_object('user_id', OLD.user_id,
        'title', OLD.title, 'created_at', OLD.created_at, 'is_active', OLD.is_active)
    WHERE kind = 'conversation' AND id = OLD.id AND rev = OLD.rev AND version IS NULL;
END;

-- Before the insert: a REPLACE removes the old row without a delete trigger.
CREATE TRIGGER conversations_inflight_replace BEFORE INSERT ON conversations
WHEN EXISTS (SELECT 1 FROM push_inflight
             WHERE kind = 'conversation' AND id = NEW.id AND version IS NULL)
BEGIN
    UPDATE push_inflight SET version = (
        SELECT json_object('user_id', c.user_id, 'title', c.title,
                           'created_at', c.created_at, 'is_active', c.is_active)
        FROM conversations AS c WHERE c.id = NEW.id AND c.rev = push_inflight.rev)
    WHERE kind = 'conversation' AND id = NEW.id AND version IS NULL;
END;

CREATE TRIGGER messages_inflight_update
AFTER UPDATE OF id, conversation_id, role, content, model, total_tokens, input_tokens,
    output_tokens, user_message_id, content_type, elapsed_time, completion_id, timestamp, error,
    error_message
ON messages
WHEN EXISTS (SELECT 1 FROM push_inflight
             WHERE kind = 'message' AND id = OLD.id AND rev = OLD.rev AND version IS NULL)
BEGIN
    UPDATE push_inflight SET version = json_object('conversation_id', OLD.conversation_id,
        'role', OLD.role, 'content', OLD.content, 'model', OLD.model,
        'total_tokens', OLD.total_tokens, 'input_tokens', OLD.input_tokens,
        'output_tokens', OLD.output_tokens, 'user_message_id', OLD.user_message_id,
        'content_type', OLD.content_type, 'elapsed_time', OLD.elapsed_time,
        'completion_id', OLD.completion_id, 'timestamp', OLD.timestamp, 'error', OLD.error,
        'error_message', OLD.error_message)
    WHERE kind = 'message' AND id = OLD.id AND rev = OLD.rev AND version IS NULL;
END;

CREATE TRIGGER messages_inflight_delete AFTER DELETE ON messages
WHEN EXISTS (SELECT 1 FROM push_inflight
             WHERE kind = 'message' AND id = OLD.id AND rev = OLD.rev AND version IS NULL)
BEGIN
    UPDATE push_inflight SET version = json_object('conversation_id', OLD.conversation_id,
        'role', OLD.role, 'content', OLD.content, 'model', OLD.model,
        'total_tokens', OLD.total_tokens, 'input_tokens', OLD.input_tokens,
        'output_tokens', OLD.output_tokens, 'user_message_id', OLD.user_message_id,
        'content_type', OLD.content_type, 'elapsed_time', OLD.elapsed_time,
        'completion_id', OLD.completion_id, 'timestamp', OLD.timestamp, 'error', OLD.error,
        'error_message', OLD.error_message)
    WHERE kind = 'message' AND id = OLD.id AND rev = OLD.rev AND version IS NULL;
END;

CREATE TRIGGER messages_inflight_replace BEFORE INSERT ON messages
WHEN EXISTS (SELECT 1 FROM push_inflight
             WHERE kind = 'message' AND id = NEW.id AND version IS NULL)
BEGIN
    UPDATE push_inflight SET version = (
        SELECT json_object('conversation_id', m.conversation_id, 'role', m.role,
            'content', m.content, 'model', m.model, 'total_tokens', m.total_tokens,
            'input_tokens', m.input_tokens, 'output_tokens', m.output_tokens,
            'user_message_id', m.user_message_id, 'content_type', m.content_type,
            'elapsed_time', m.elapsed_time, 'completion_id', m.completion_id,
            'timestamp', m.timestamp, 'error', m.error, 'error_message', m.error_message)
        FROM messages AS m WHERE m.id = NEW.id AND m.rev = push_inflight.rev)
    WHERE kind = 'message' AND id = NEW.id AND version IS NULL;
END;

-- An UPDATE OR REPLACE giving another row the id of a row in flight removes that row
-- without a delete trigger too.
CREATE TRIGGER conversations_inflight_replace_id BEFORE UPDATE OF id ON conversations
WHEN NEW.id IS NOT OLD.id
 AND EXISTS (SELECT 1 FROM push_inflight
             WHERE kind = 'conversation' AND id = NEW.id AND version IS NULL)
BEGIN
    UPDATE push_inflight SET version = (
        SELECT json_object('user_id', c.user_id, 'title', c.title,
                           'created_at', c.created_at, 'is_active', c.is_active)
        FROM conversations AS c WHERE c.id = NEW.id AND c.rev = push_inflight.rev)
    WHERE kind = 'conversation' AND id = NEW.id AND version IS NULL;
END;

CREATE TRIGGER messages_inflight_replace_id BEFORE UPDATE OF id ON messages
WHEN NEW.id IS NOT OLD.id
 AND EXISTS (SELECT 1 FROM push_inflight
             WHERE kind = 'message' AND id = NEW.id AND version IS NULL)
BEGIN
    UPDATE push_inflight SET version = (
        SELECT json_object('conversation_id', m.conversation_id, 'role', m.role,
            'content', m.content, 'model', m.model, 'total_tokens', m.total_tokens,
            'input_tokens', m.input_tokens, 'output_tokens', m.output_tokens,
            'user_message_id', m.user_message_id, 'content_type', m.content_type,
            'elapsed_time', m.elapsed_time, 'completion_id', m.completion_id,
            'timestamp', m.timestamp, 'error', m.error, 'error_message', m.error_message)
        FROM messages AS m WHERE m.id = NEW.id AND m.rev = push_inflight.rev)
    WHERE kind = 'message' AND id = NEW.id AND version IS NULL;
END;
