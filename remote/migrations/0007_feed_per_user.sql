-- chatsync: existing-deployments=run
-- The change feed (0004) keyed per user, and deletes that reach every device (issue 9,
-- item 10).
--
-- 0004 keyed entries by (kind, id) across users: when Alice deleted conversation X and Bob
-- then wrote a conversation with id X, the entry became Bob's and Alice's other devices
-- never learned of her delete. Entries are now keyed (user_id, kind, id): each user's
-- entries are their own, and a row that leaves a user (deleted, moved to another owner, or
-- its id changed) leaves that user a deleted entry stamped with the writing transaction.
--
-- 0004 also removed the entries of a deleted conversation's messages. A message moved from
-- C1 to C2 on one device, then deleted with C2, was never announced to a device still
-- holding it in C1. Those entries are now marked deleted (with the deleting transaction's
-- xid and origin) instead.
--
-- Columns and their meanings are unchanged (the pull reads kind, id, user_id,
-- conversation_id, xid, deleted, origin); the pull's index (user_id, xid) stays.

ALTER TABLE chatsync_feed.changes DROP CONSTRAINT changes_pkey;
ALTER TABLE chatsync_feed.changes ADD PRIMARY KEY (user_id, kind, id);
DROP INDEX IF EXISTS chatsync_feed.changes_conversation;
CREATE INDEX changes_conversation ON chatsync_feed.changes (user_id, conversation_id)
    WHERE kind = 'message';

CREATE OR REPLACE FUNCTION chatsync.feed_sessions_written() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO chatsync_feed.changes AS f (kind, id, user_id)
    SELECT 'conversation', n.id, n.user_id FROM new_rows AS n
    ON CONFLICT (user_id, kind, id) DO UPDATE
        SET xid = EXCLUDED.xid, origin = EXCLUDED.origin, deleted = false;
    RETURN NULL;
END
$$;

-- A session that left its owner (given to another user, or its id changed): the old owner
-- is told it is gone, with its messages; the new owner learns of its messages.
CREATE OR REPLACE FUNCTION chatsync.feed_sessions_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO chatsync_feed.changes AS f (kind, id, user_id)
    SELECT 'conversation', n.id, n.user_id FROM new_rows AS n
    ON CONFLICT (user_id, kind, id) DO UPDATE
        SET xid = EXCLUDED.xid, origin = EXCLUDED.origin, deleted = false;

    -- The usual update keeps owner and id: one set difference, and nothing more to do.
    IF NOT EXISTS (SELECT o.user_id, o.id FROM old_rows AS o
                   EXCEPT SELECT n.user_id, n.id FROM new_rows AS n) THEN
        RETURN NULL;
    END IF;

    WITH gone AS (
        SELECT o.user_id, o.id FROM old_rows AS o
        EXCEPT SELECT n.user_id, n.id FROM new_rows AS n
    )
    INSERT INTO chatsync_feed.changes AS f (kind, id, user_id, deleted)
    SELECT 'conversation', g.id, g.user_id, true FROM gone AS g
    ON CONFLICT (user_id, kind, id) DO UPDATE
        SET xid = EXCLUDED.xid, origin = EXCLUDED.origin, deleted = true;

    WITH gone AS (
        SELECT o.user_id, o.id FROM old_rows AS o
        EXCEPT SELECT n.user_id, n.id FROM new_rows AS n
    )
    UPDATE chatsync_feed.changes AS f
    SET deleted = true, xid = pg_current_xact_id(),
        origin = nullif(current_setting('chatsync.origin', true), '')
    FROM gone AS g
    WHERE f.kind = 'message' AND f.user_id = g.user_id AND f.conversation_id = g.id
      AND NOT f.deleted;

    WITH arrived AS (
        SELECT n.user_id, n.id FROM new_rows AS n
        EXCEPT SELECT o.user_id, o.id FROM old_rows AS o
    )
    INSERT INTO chatsync_feed.changes AS f (kind, id, user_id, conversation_id)
    SELECT 'message', m.id, a.user_id, m.session_id
    FROM arrived AS a JOIN public.chat_messages AS m ON m.session_id = a.id
    ON CONFLICT (user_id, kind, id) DO UPDATE
        SET xid = EXCLUDED.xid, origin = EXCLUDED.origin,
            conversation_id = EXCLUDED.conversation_id, deleted = false;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION chatsync.feed_sessions_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO chatsync_feed.changes AS f (kind, id, user_id, deleted)
    SELECT 'conversation', o.id, o.user_id, true FROM old_rows AS o
    ON CONFLICT (user_id, kind, id) DO UPDATE
        SET xid = EXCLUDED.xid, origin = EXCLUDED.origin, deleted = true;
    -- Its messages are gone too: tell devices that may hold them elsewhere (moved there
    -- from another conversation they still show it in).
    UPDATE chatsync_feed.changes AS f
    SET deleted = true, xid = pg_current_xact_id(),
        origin = nullif(current_setting('chatsync.origin', true), '')
    FROM old_rows AS o
    WHERE f.kind = 'message' AND f.user_id = o.user_id AND f.conversation_id = o.id
      AND NOT f.deleted;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION chatsync.feed_messages_written() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO chatsync_feed.changes AS f (kind, id, user_id, conversation_id)
    SELECT 'message', n.id, s.user_id, n.session_id
    FROM new_rows AS n JOIN public.chat_sessions AS s ON s.id = n.session_id
    ON CONFLICT (user_id, kind, id) DO UPDATE
        SET xid = EXCLUDED.xid, origin = EXCLUDED.origin,
            conversation_id = EXCLUDED.conversation_id, deleted = false;
    RETURN NULL;
END
$$;

-- A message moved to a session of another user (or whose id changed) is gone for the
-- old owner.
CREATE OR REPLACE FUNCTION chatsync.feed_messages_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO chatsync_feed.changes AS f (kind, id, user_id, conversation_id)
    SELECT 'message', n.id, s.user_id, n.session_id
    FROM new_rows AS n JOIN public.chat_sessions AS s ON s.id = n.session_id
    ON CONFLICT (user_id, kind, id) DO UPDATE
        SET xid = EXCLUDED.xid, origin = EXCLUDED.origin,
            conversation_id = EXCLUDED.conversation_id, deleted = false;

    -- (owner, id) pairs before the update that are not there after it: rows that left
    -- their owner. Both sides hashed once; a plain edit leaves the difference empty.
    INSERT INTO chatsync_feed.changes AS f (kind, id, user_id, conversation_id, deleted)
    SELECT 'message', gone.id, gone.user_id, o.session_id, true
    FROM (SELECT s.user_id, o.id
          FROM old_rows AS o JOIN public.chat_sessions AS s ON s.id = o.session_id
          EXCEPT
          SELECT s.user_id, n.id
          FROM new_rows AS n JOIN public.chat_sessions AS s ON s.id = n.session_id) AS gone
    JOIN old_rows AS o ON o.id = gone.id
    ON CONFLICT (user_id, kind, id) DO UPDATE
        SET xid = EXCLUDED.xid, origin = EXCLUDED.origin, deleted = true;
    RETURN NULL;
END
$$;

-- A message deleted by the cascade of its session's delete has no session any more: the
-- join drops it, and the session's delete marks its entry.
CREATE OR REPLACE FUNCTION chatsync.feed_messages_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO chatsync_feed.changes AS f (kind, id, user_id, conversation_id, deleted)
    SELECT 'message', o.id, s.user_id, o.session_id, true
    FROM old_rows AS o JOIN public.chat_sessions AS s ON s.id = o.session_id
    ON CONFLICT (user_id, kind, id) DO UPDATE
        SET xid = EXCLUDED.xid, origin = EXCLUDED.origin,
            conversation_id = EXCLUDED.conversation_id, deleted = true;
    RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION chatsync.feed_sessions_updated(), chatsync.feed_messages_updated()
    FROM PUBLIC;

DROP TRIGGER chatsync_feed_sessions_updated ON public.chat_sessions;
CREATE TRIGGER chatsync_feed_sessions_updated AFTER UPDATE ON public.chat_sessions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chatsync.feed_sessions_updated();
DROP TRIGGER chatsync_feed_messages_updated ON public.chat_messages;
CREATE TRIGGER chatsync_feed_messages_updated AFTER UPDATE ON public.chat_messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chatsync.feed_messages_updated();
