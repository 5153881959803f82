-- The local store, schema version 1.
--
-- Clients write conversations, messages and auth_session with plain SQL or the Python API.
-- The sync columns (rev, synced_rev) are the daemon's: triggers set rev from one store-wide
-- counter on every real change, and the sync engine sets synced_rev once the remote has the
-- row. A row is dirty while rev > synced_rev. synced_rev 0 means the remote never had the
-- row; a row pulled from the remote starts at rev = synced_rev = -1.
--
-- Constraint names are the error messages a client sees, so each names its field.

CREATE TABLE sync_meta (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    -- the store-wide change counter; every tracked change takes the next value
    last_rev        INTEGER NOT NULL DEFAULT 0,
    -- 1 only inside the sync engine's own write transactions (pulled rows), which
    -- therefore are not tracked; SQLite has one writer, so no client ever sees it set
    applying_remote INTEGER NOT NULL DEFAULT 0 CHECK (applying_remote IN (0, 1))
);
INSERT INTO sync_meta (id) VALUES (1);

CREATE TABLE auth_session (
    id           INTEGER PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    user_id      TEXT NOT NULL
        -- lowercase, as PostgreSQL prints a uuid, so it compares equal to pulled rows
        CONSTRAINT "auth_session.user_id must be a lowercase UUID"
        CHECK (length(user_id) = 36 AND user_id GLOB
            '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'),
    email        TEXT NOT NULL DEFAULT ''
        CONSTRAINT "auth_session.email must be at most 255 characters"
        CHECK (length(email) <= 255),
    signed_in_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE conversations (
    id         TEXT PRIMARY KEY
        CONSTRAINT "conversations.id must be 1 to 255 characters"
        CHECK (typeof(id) = 'text' AND length(id) BETWEEN 1 AND 255),
    -- NULL for a conversation made while signed out; claimed at sign-in
    user_id    TEXT
        CONSTRAINT "conversations.user_id must be a lowercase UUID or NULL"
        CHECK (user_id IS NULL OR (length(user_id) = 36 AND user_id = lower(user_id))),
    title      TEXT NOT NULL DEFAULT 'New Chat'
        CONSTRAINT "conversations.title must be text of at most 255 characters"
        CHECK (typeof(title) = 'text' AND length(title) <= 255),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        CONSTRAINT "conversations.created_at must be an ISO-8601 timestamp"
        CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*'
               AND julianday(created_at) IS NOT NULL
               AND date(substr(created_at, 1, 10), '+0 days') = substr(created_at, 1, 10)),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        CONSTRAINT "conversations.updated_at must be an ISO-8601 timestamp"
        CHECK (updated_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*'
               AND julianday(updated_at) IS NOT NULL
               AND date(substr(updated_at, 1, 10), '+0 days') = substr(updated_at, 1, 10)),
    is_active  INTEGER NOT NULL DEFAULT 1
        CONSTRAINT "conversations.is_active must be 0 or 1" CHECK (is_active IN (0, 1)),
    rev        INTEGER NOT NULL DEFAULT 0,
    synced_rev INTEGER NOT NULL DEFAULT 0,
    dirty      INTEGER GENERATED ALWAYS AS (rev > synced_rev) VIRTUAL
);
CREATE INDEX conversations_user ON conversations (user_id);
-- Finding what to push costs O(dirty rows): only dirty rows are in this index.
CREATE INDEX conversations_pending ON conversations (rev) WHERE rev > synced_rev;

CREATE TABLE messages (
    id              TEXT PRIMARY KEY
        CONSTRAINT "messages.id must be 1 to 255 characters"
        CHECK (typeof(id) = 'text' AND length(id) BETWEEN 1 AND 255),
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role            TEXT NOT NULL
        CONSTRAINT "messages.role must be 'user', 'assistant' or 'system'"
        CHECK (role IN ('user', 'assistant', 'system')),
    content         TEXT NOT NULL
        CONSTRAINT "messages.content must be text" CHECK (typeof(content) = 'text'),
    model           TEXT
        CONSTRAINT "messages.model must be at most 100 characters"
        CHECK (model IS NULL OR length(model) <= 100),
    total_tokens    INTEGER NOT NULL DEFAULT 0
        CONSTRAINT "messages.total_tokens must be a whole number from 0 to 2147483647"
        CHECK (typeof(total_tokens) = 'integer' AND total_tokens BETWEEN 0 AND 2147483647),
    input_tokens    INTEGER NOT NULL DEFAULT 0
        CONSTRAINT "messages.input_tokens must be a whole number from 0 to 2147483647"
        CHECK (typeof(input_tokens) = 'integer' AND input_tokens BETWEEN 0 AND 2147483647),
    output_tokens   INTEGER NOT NULL DEFAULT 0
        CONSTRAINT "messages.output_tokens must be a whole number from 0 to 2147483647"
        CHECK (typeof(output_tokens) = 'integer' AND output_tokens BETWEEN 0 AND 2147483647),
    user_message_id TEXT,
    content_type    TEXT NOT NULL DEFAULT 'text'
        CONSTRAINT "messages.content_type must be 'text' or 'markdown'"
        CHECK (content_type IN ('text', 'markdown')),
    elapsed_time    INTEGER NOT NULL DEFAULT 0
        CONSTRAINT "messages.elapsed_time must be a whole number from 0 to 2147483647"
        CHECK (typeof(elapsed_time) = 'integer' AND elapsed_time BETWEEN 0 AND 2147483647),
    completion_id   TEXT
        CONSTRAINT "messages.completion_id must be at most 255 characters"
        CHECK (completion_id IS NULL OR length(completion_id) <= 255),
    timestamp       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        CONSTRAINT "messages.timestamp must be an ISO-8601 timestamp"
        CHECK (timestamp GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*'
               AND julianday(timestamp) IS NOT NULL
               AND date(substr(timestamp, 1, 10), '+0 days') = substr(timestamp, 1, 10)),
    error           INTEGER NOT NULL DEFAULT 0
        CONSTRAINT "messages.error must be 0 or 1" CHECK (error IN (0, 1)),
    rev             INTEGER NOT NULL DEFAULT 0,
    synced_rev      INTEGER NOT NULL DEFAULT 0,
    dirty           INTEGER GENERATED ALWAYS AS (rev > synced_rev) VIRTUAL
);
CREATE INDEX messages_conversation ON messages (conversation_id, timestamp);
CREATE INDEX messages_pending ON messages (rev) WHERE rev > synced_rev;

-- A deleted row waits here until the remote acknowledges the delete.
CREATE TABLE tombstones (
    kind       TEXT NOT NULL CHECK (kind IN ('conversation', 'message')),
    id         TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    rev        INTEGER NOT NULL,
    deleted_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (kind, id)
);

-- Rows the remote refused, with its reason. A row is retried when it changes (its rev no
-- longer matches) or when the entry is cleared on request.
CREATE TABLE quarantine (
    kind   TEXT NOT NULL CHECK (kind IN ('conversation', 'message')),
    id     TEXT NOT NULL,
    rev    INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (kind, id)
);

-- Change tracking. Every trigger is skipped while the sync engine applies remote rows.

CREATE TRIGGER conversations_track_insert AFTER INSERT ON conversations
WHEN (SELECT applying_remote FROM sync_meta) = 0
BEGIN
    UPDATE sync_meta SET last_rev = last_rev + 1;
    UPDATE conversations SET rev = (SELECT last_rev FROM sync_meta) WHERE id = NEW.id;
    DELETE FROM tombstones WHERE kind = 'conversation' AND id = NEW.id;
END;

-- Writing the values a row already has is not a change: the WHEN clause compares them.
CREATE TRIGGER conversations_track_update
AFTER UPDATE OF id, user_id, title, created_at, updated_at, is_active ON conversations
WHEN (SELECT applying_remote FROM sync_meta) = 0
 AND (NEW.id IS NOT OLD.id OR NEW.user_id IS NOT OLD.user_id OR NEW.title IS NOT OLD.title
      OR NEW.created_at IS NOT OLD.created_at OR NEW.updated_at IS NOT OLD.updated_at
      OR NEW.is_active IS NOT OLD.is_active)
BEGIN
    UPDATE sync_meta SET last_rev = last_rev + 1;
    UPDATE conversations SET rev = (SELECT last_rev FROM sync_meta) WHERE id = NEW.id;
    -- a renamed id is a delete of the old id
    INSERT OR REPLACE INTO tombstones (kind, id, user_id, rev)
    SELECT 'conversation', OLD.id, OLD.user_id, (SELECT last_rev FROM sync_meta)
    WHERE NEW.id IS NOT OLD.id AND OLD.user_id IS NOT NULL;
END;

-- A conversation that never had an owner was never pushed: no tombstone needed.
CREATE TRIGGER conversations_track_delete AFTER DELETE ON conversations
WHEN (SELECT applying_remote FROM sync_meta) = 0 AND OLD.user_id IS NOT NULL
BEGIN
    UPDATE sync_meta SET last_rev = last_rev + 1;
    INSERT OR REPLACE INTO tombstones (kind, id, user_id, rev)
    VALUES ('conversation', OLD.id, OLD.user_id, (SELECT last_rev FROM sync_meta));
    DELETE FROM quarantine WHERE kind = 'conversation' AND id = OLD.id;
END;

CREATE TRIGGER messages_track_insert AFTER INSERT ON messages
WHEN (SELECT applying_remote FROM sync_meta) = 0
BEGIN
    UPDATE sync_meta SET last_rev = last_rev + 1;
    UPDATE messages SET rev = (SELECT last_rev FROM sync_meta) WHERE id = NEW.id;
    DELETE FROM tombstones WHERE kind = 'message' AND id = NEW.id;
END;

CREATE TRIGGER messages_track_update
AFTER UPDATE OF id, conversation_id, role, content, model, total_tokens, input_tokens,
    output_tokens, user_message_id, content_type, elapsed_time, completion_id, timestamp, error
ON messages
WHEN (SELECT applying_remote FROM sync_meta) = 0
 AND (NEW.id IS NOT OLD.id OR NEW.conversation_id IS NOT OLD.conversation_id
      OR NEW.role IS NOT OLD.role OR NEW.content IS NOT OLD.content
      OR NEW.model IS NOT OLD.model OR NEW.total_tokens IS NOT OLD.total_tokens
      OR NEW.input_tokens IS NOT OLD.input_tokens OR NEW.output_tokens IS NOT OLD.output_tokens
      OR NEW.user_message_id IS NOT OLD.user_message_id
      OR NEW.content_type IS NOT OLD.content_type OR NEW.elapsed_time IS NOT OLD.elapsed_time
      OR NEW.completion_id IS NOT OLD.completion_id OR NEW.timestamp IS NOT OLD.timestamp
      OR NEW.error IS NOT OLD.error)
BEGIN
    UPDATE sync_meta SET last_rev = last_rev + 1;
    UPDATE messages SET rev = (SELECT last_rev FROM sync_meta) WHERE id = NEW.id;
    INSERT OR REPLACE INTO tombstones (kind, id, user_id, rev)
    SELECT 'message', OLD.id, c.user_id, (SELECT last_rev FROM sync_meta)
    FROM conversations AS c
    WHERE NEW.id IS NOT OLD.id AND c.id = OLD.conversation_id AND c.user_id IS NOT NULL;
END;

-- When a whole conversation is deleted its messages go by cascade, and the conversation is
-- no longer visible here: the conversation's tombstone covers them (the remote cascades too).
CREATE TRIGGER messages_track_delete AFTER DELETE ON messages
WHEN (SELECT applying_remote FROM sync_meta) = 0
BEGIN
    UPDATE sync_meta SET last_rev = last_rev + 1;
    INSERT OR REPLACE INTO tombstones (kind, id, user_id, rev)
    SELECT 'message', OLD.id, c.user_id, (SELECT last_rev FROM sync_meta)
    FROM conversations AS c
    WHERE c.id = OLD.conversation_id AND c.user_id IS NOT NULL;
    DELETE FROM quarantine WHERE kind = 'message' AND id = OLD.id;
END;

-- Derived figures for clients that want them locally. The server computes its own.
CREATE VIEW conversation_stats AS
SELECT
    c.id AS conversation_id,
    count(m.id) AS message_count,
    coalesce(sum(m.total_tokens), 0) AS total_tokens,
    max(m.timestamp) AS last_message_timestamp,
    (SELECT substr(l.content, 1, 200) FROM messages AS l
      WHERE l.conversation_id = c.id ORDER BY l.timestamp DESC, l.id DESC LIMIT 1)
        AS last_message_preview,
    (SELECT l.model FROM messages AS l
      WHERE l.conversation_id = c.id ORDER BY l.timestamp DESC, l.id DESC LIMIT 1)
        AS last_model
FROM conversations AS c
LEFT JOIN messages AS m ON m.conversation_id = c.id
GROUP BY c.id;
