-- chatsync: existing-deployments=run
-- A change feed for pulling: which conversations and messages changed, by transaction id.
--
-- Every insert, update and delete of chat_sessions and chat_messages (by chatsync, by the
-- web app's server, by anything) upserts one entry per row into chatsync_feed.changes,
-- stamped with the writing transaction's id (xid8). A puller keeps the snapshot of its last
-- pull (pg_current_snapshot()) as its cursor and reads the entries whose transaction that
-- snapshot did not see (xid >= its xmax, or in flight then) and its current one does. A
-- transaction that started earlier but commits later than one already pulled is in the
-- old snapshot's in-flight list, so it is never passed over.
--
-- The engine that wrote an entry is recorded too (origin): the puller skips the message
-- entries of its own pushes, which it already has, so the pull after a large first push
-- does not read it all back.
--
-- One entry per row (not an append-only log): the newest writer's id overwrites the older,
-- and the puller reads the row's current state, so the table grows with the number of rows
-- ever written, not with the number of writes. A deleted row keeps an entry (deleted =
-- true) so other devices learn of the delete; a deleted conversation drops its messages'
-- entries, since the conversation's own entry covers them.
--
-- It only adds triggers of its own (statement-level, with transition tables, so a bulk
-- insert writes the feed once per statement); the app's tables and triggers are untouched.
-- The feed lives in its own schema so that granting it to `authenticated` exposes nothing
-- else; row-level security shows each user only their own entries.

CREATE SCHEMA IF NOT EXISTS chatsync;
CREATE SCHEMA IF NOT EXISTS chatsync_feed;

CREATE TABLE chatsync_feed.changes (
    kind            text NOT NULL CHECK (kind IN ('conversation', 'message')),
    id              text NOT NULL,
    user_id         uuid NOT NULL,
    conversation_id text,  -- for a message, its session
    xid             xid8 NOT NULL DEFAULT pg_current_xact_id(),
    deleted         boolean NOT NULL DEFAULT false,
    -- the chatsync engine that wrote it (its transactions set chatsync.origin); NULL for
    -- any other writer. A puller skips the echoes of its own pushes of messages.
    origin          text DEFAULT nullif(current_setting('chatsync.origin', true), ''),
    PRIMARY KEY (kind, id)
);
CREATE INDEX changes_user_xid ON chatsync_feed.changes (user_id, xid);
CREATE INDEX changes_conversation ON chatsync_feed.changes (conversation_id)
    WHERE kind = 'message';

ALTER TABLE chatsync_feed.changes ENABLE ROW LEVEL SECURITY;
CREATE POLICY changes_own ON chatsync_feed.changes
    FOR SELECT TO authenticated USING (user_id = (SELECT auth.uid()));
GRANT USAGE ON SCHEMA chatsync_feed TO authenticated;
GRANT SELECT ON chatsync_feed.changes TO authenticated;

CREATE FUNCTION chatsync.feed_sessions_written() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO chatsync_feed.changes AS f (kind, id, user_id)
    SELECT 'conversation', n.id, n.user_id FROM new_rows AS n
    ON CONFLICT (kind, id) DO UPDATE
        SET xid = EXCLUDED.xid, origin = EXCLUDED.origin, user_id = EXCLUDED.user_id, deleted = false;
    RETURN NULL;
END
$$;

CREATE FUNCTION chatsync.feed_sessions_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO chatsync_feed.changes AS f (kind, id, user_id, deleted)
    SELECT 'conversation', o.id, o.user_id, true FROM old_rows AS o
    ON CONFLICT (kind, id) DO UPDATE
        SET xid = EXCLUDED.xid, origin = EXCLUDED.origin, user_id = EXCLUDED.user_id, deleted = true;
    DELETE FROM chatsync_feed.changes AS f
    WHERE f.kind = 'message' AND f.conversation_id IN (SELECT o.id FROM old_rows AS o);
    RETURN NULL;
END
$$;

CREATE FUNCTION chatsync.feed_messages_written() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO chatsync_feed.changes AS f (kind, id, user_id, conversation_id)
    SELECT 'message', n.id, s.user_id, n.session_id
    FROM new_rows AS n JOIN public.chat_sessions AS s ON s.id = n.session_id
    ON CONFLICT (kind, id) DO UPDATE
        SET xid = EXCLUDED.xid, origin = EXCLUDED.origin, user_id = EXCLUDED.user_id,
            conversation_id = EXCLUDED.conversation_id, deleted = false;
    RETURN NULL;
END
$$;

-- A message deleted by the cascade of its session's delete has no session any more: the
-- join drops it, and the session's entry covers it.
CREATE FUNCTION chatsync.feed_messages_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO chatsync_feed.changes AS f (kind, id, user_id, conversation_id, deleted)
    SELECT 'message', o.id, s.user_id, o.session_id, true
    FROM old_rows AS o JOIN public.chat_sessions AS s ON s.id = o.session_id
    ON CONFLICT (kind, id) DO UPDATE
        SET xid = EXCLUDED.xid, origin = EXCLUDED.origin, user_id = EXCLUDED.user_id, deleted = true;
    RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION chatsync.feed_sessions_written(), chatsync.feed_sessions_deleted(),
    chatsync.feed_messages_written(), chatsync.feed_messages_deleted() FROM PUBLIC;

CREATE TRIGGER chatsync_feed_sessions_inserted AFTER INSERT ON public.chat_sessions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chatsync.feed_sessions_written();
CREATE TRIGGER chatsync_feed_sessions_updated AFTER UPDATE ON public.chat_sessions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chatsync.feed_sessions_written();
CREATE TRIGGER chatsync_feed_sessions_deleted AFTER DELETE ON public.chat_sessions
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chatsync.feed_sessions_deleted();
CREATE TRIGGER chatsync_feed_messages_inserted AFTER INSERT ON public.chat_messages
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chatsync.feed_messages_written();
CREATE TRIGGER chatsync_feed_messages_updated AFTER UPDATE ON public.chat_messages
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chatsync.feed_messages_written();
CREATE TRIGGER chatsync_feed_messages_deleted AFTER DELETE ON public.chat_messages
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chatsync.feed_messages_deleted();
