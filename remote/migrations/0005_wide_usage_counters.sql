-- chatsync: existing-deployments=run
-- Usage counters that accumulate forever become bigint (issue 9, item 8).
--
-- user_usage_daily's message, token, session and active-minute counters are int in the
-- app's schema: one message with 2^31 - 1 tokens, or a heavy user's history, made every
-- later insert of that user fail with "integer out of range" (the app's own too, since its
-- trigger adds into these columns). Widening only widens: every value stays, every writer
-- that adds int into them keeps working.
--
-- chat_sessions.message_count and total_tokens stay int: the app's own functions return
-- them as integer (get_user_recent_sessions), and a bigint column would break them.
-- chatsync's session statistics saturate at the int bounds instead (see 0006).
--
-- Views over user_usage_daily (the app's api_user_summary) must be dropped for ALTER TYPE
-- and are recreated from their own stored definition, options (security_invoker…), owner,
-- comment and grants, so nothing about them changes but the type of sums over the widened
-- columns (sum(bigint) is numeric). A view that other views depend on makes this fail, and
-- the whole migration is rolled back.

CREATE TEMPORARY TABLE chatsync_saved_views ON COMMIT DROP AS
SELECT DISTINCT c.oid, n.nspname, c.relname, pg_get_viewdef(c.oid) AS definition,
       c.reloptions, c.relacl, pg_get_userbyid(c.relowner) AS owner,
       obj_description(c.oid, 'pg_class') AS comment
FROM pg_depend AS d
JOIN pg_rewrite AS r ON r.oid = d.objid
JOIN pg_class AS c ON c.oid = r.ev_class
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE d.classid = 'pg_rewrite'::regclass
  AND d.refclassid = 'pg_class'::regclass
  AND d.refobjid = 'public.user_usage_daily'::regclass
  AND c.relkind = 'v';

DO $$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT * FROM chatsync_saved_views LOOP
        EXECUTE format('DROP VIEW %I.%I', v.nspname, v.relname);
    END LOOP;
END
$$;

ALTER TABLE public.user_usage_daily
    ALTER COLUMN messages_sent TYPE bigint,
    ALTER COLUMN messages_received TYPE bigint,
    ALTER COLUMN input_tokens TYPE bigint,
    ALTER COLUMN output_tokens TYPE bigint,
    ALTER COLUMN total_tokens TYPE bigint,
    ALTER COLUMN sessions_created TYPE bigint,
    ALTER COLUMN active_minutes TYPE bigint;

DO $$
DECLARE
    v record;
    g record;
    target text;
BEGIN
    FOR v IN SELECT * FROM chatsync_saved_views LOOP
        target := format('%I.%I', v.nspname, v.relname);
        IF v.reloptions IS NULL THEN
            EXECUTE format('CREATE VIEW %s AS %s', target, v.definition);
        ELSE
            EXECUTE format('CREATE VIEW %s WITH (%s) AS %s',
                           target, array_to_string(v.reloptions, ', '), v.definition);
        END IF;
        EXECUTE format('ALTER VIEW %s OWNER TO %I', target, v.owner);
        IF v.comment IS NOT NULL THEN
            EXECUTE format('COMMENT ON VIEW %s IS %L', target, v.comment);
        END IF;
        -- The grants exactly as they were: clear what the new view got by default, then
        -- grant each saved privilege (NULL means the default privileges, as before).
        FOR g IN
            SELECT DISTINCT a.grantee
            FROM pg_class AS c,
                 aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) AS a
            WHERE c.oid = target::regclass
        LOOP
            EXECUTE format('REVOKE ALL ON %s FROM %s', target,
                           CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                                ELSE quote_ident(pg_get_userbyid(g.grantee)) END);
        END LOOP;
        FOR g IN
            SELECT a.grantee, a.privilege_type, a.is_grantable
            FROM aclexplode(coalesce(v.relacl,
                                     acldefault('r', (SELECT oid FROM pg_roles
                                                      WHERE rolname = v.owner)))) AS a
        LOOP
            EXECUTE format('GRANT %s ON %s TO %s%s', g.privilege_type, target,
                           CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                                ELSE quote_ident(pg_get_userbyid(g.grantee)) END,
                           CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
    END LOOP;
END
$$;
DROP TABLE chatsync_saved_views;
