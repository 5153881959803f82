-- chatsync: existing-deployments=run
-- The change feed, live and bounded (issue 11, items 1 and 3).
--
-- Live: every statement that writes feed entries sends one NOTIFY on channel
-- 'chatsync_feed' per distinct (user, origin) it wrote, payload '<user_id>:<origin>' (origin
-- '' for writers other than a chatsync engine, e.g. the web app). PostgreSQL delivers it
-- only after the writing transaction commits, and folds identical payloads of one
-- transaction into one, so a 1000-row push is one notification. The sync server LISTENs on
-- one session connection per process and wakes only that user's waiting pulls, except the
-- device whose own push it was (its origin). The triggers sit on the feed table itself, so
-- every path that writes the feed (the six triggers of 0004/0007, whatever writes the app's
-- tables) notifies without being changed.
--
-- Bounded: entries carry the time they were last written (changed_at) and the server prunes
-- those older than server.feed_retention_seconds. A pruned entry may have been a delete a
-- device has not seen, so the largest pruned xid is recorded per user (chatsync_feed.pruned):
-- a pull whose cursor's xmin is not above it is answered "re-sync" instead of a window that
-- could miss deletes (see remote/pull.py).

ALTER TABLE chatsync_feed.changes ADD COLUMN changed_at timestamptz NOT NULL DEFAULT now();
-- The pruning's scan; the oldest entries are at its left edge.
CREATE INDEX changes_changed_at ON chatsync_feed.changes (changed_at);

-- Set on every upsert: the ON CONFLICT … DO UPDATE of the feed functions and their
-- UPDATEs leave the column alone, so a row trigger stamps it instead of changing them all.
CREATE FUNCTION chatsync.feed_stamp() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER chatsync_feed_stamp BEFORE UPDATE ON chatsync_feed.changes
    FOR EACH ROW EXECUTE FUNCTION chatsync.feed_stamp();

CREATE FUNCTION chatsync.feed_notify() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM pg_notify('chatsync_feed', w.user_id::text || ':' || coalesce(w.origin, ''))
    FROM (SELECT DISTINCT n.user_id, n.origin FROM new_rows AS n) AS w;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION chatsync.feed_stamp(), chatsync.feed_notify() FROM PUBLIC;

-- Two triggers: a trigger with transition tables takes one event only. An upsert fires
-- both (inserted rows, updated rows); the same payload twice in a transaction is sent once.
CREATE TRIGGER chatsync_feed_notify_inserted AFTER INSERT ON chatsync_feed.changes
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chatsync.feed_notify();
CREATE TRIGGER chatsync_feed_notify_updated AFTER UPDATE ON chatsync_feed.changes
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chatsync.feed_notify();

-- Per user, the largest xid of an entry the retention removed: a cursor that had not seen
-- it must re-sync. Only grows.
CREATE TABLE chatsync_feed.pruned (
    user_id   uuid PRIMARY KEY,
    xid       xid8 NOT NULL,
    pruned_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE chatsync_feed.pruned ENABLE ROW LEVEL SECURITY;
CREATE POLICY pruned_own ON chatsync_feed.pruned
    FOR SELECT TO authenticated USING (user_id = (SELECT auth.uid()));
GRANT SELECT ON chatsync_feed.pruned TO authenticated;
