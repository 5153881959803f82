-- chatsync: existing-deployments=opt-in
-- Corrected usage analytics and session statistics.
--
-- The app's original on_message_change trigger called track_user_usage() on every INSERT
-- and every UPDATE, so each re-sent message was counted again, on the day of the sync.
-- These triggers count a user or assistant message once, when it is inserted, and on an
-- update only the change in what it contributes (its tokens, role, model or day), on the
-- day of the message's own timestamp (UTC). A no-op or content-only update counts nothing.
-- Deleting a message does not refund usage: the tokens were spent.
--
-- They are statement-level with transition tables, so a pushed batch of a thousand
-- messages recomputes each touched session's statistics once, not a thousand times.

CREATE SCHEMA IF NOT EXISTS chatsync;

-- Adds per-key counts of b to a, dropping keys that reach zero.
CREATE OR REPLACE FUNCTION chatsync.jsonb_add_counts(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_object_agg(key, total), '{}'::jsonb)
    FROM (
        SELECT key, sum(value::numeric)::bigint AS total
        FROM (SELECT * FROM jsonb_each_text(coalesce(a, '{}'::jsonb))
              UNION ALL
              SELECT * FROM jsonb_each_text(coalesce(b, '{}'::jsonb))) AS pairs
        GROUP BY key
    ) AS sums
    WHERE total <> 0
$$;

-- Applies usage deltas: a JSON array of {user_id, day, model, sent, received, input,
-- output, sessions}, each signed. Rows that sum to nothing write nothing.
CREATE OR REPLACE FUNCTION chatsync.apply_usage(deltas jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    WITH d AS (
        SELECT * FROM jsonb_to_recordset(deltas) AS x(
            user_id uuid, day date, model text, sent int, received int,
            input int, output int, sessions int)
    ),
    by_model AS (
        SELECT user_id, day, model,
               sum(sent) AS sent, sum(received) AS received, sum(input) AS input,
               sum(output) AS output, sum(sessions) AS sessions
        FROM d GROUP BY user_id, day, model
    ),
    by_day AS (
        SELECT user_id, day,
               sum(sent)::int AS sent, sum(received)::int AS received,
               sum(input)::int AS input, sum(output)::int AS output,
               sum(sessions)::int AS sessions,
               coalesce(jsonb_object_agg(model, sent + received)
                        FILTER (WHERE model IS NOT NULL AND sent + received <> 0),
                        '{}'::jsonb) AS models
        FROM by_model GROUP BY user_id, day
    )
    INSERT INTO public.user_usage_daily AS u (
        user_id, usage_date, messages_sent, messages_received, input_tokens, output_tokens,
        total_tokens, models_used, sessions_created)
    SELECT user_id, day, sent, received, input, output, input + output, models, sessions
    FROM by_day
    WHERE (sent, received, input, output, sessions) <> (0, 0, 0, 0, 0) OR models <> '{}'
    ON CONFLICT (user_id, usage_date) DO UPDATE SET
        messages_sent = u.messages_sent + EXCLUDED.messages_sent,
        messages_received = u.messages_received + EXCLUDED.messages_received,
        input_tokens = u.input_tokens + EXCLUDED.input_tokens,
        output_tokens = u.output_tokens + EXCLUDED.output_tokens,
        total_tokens = u.total_tokens + EXCLUDED.total_tokens,
        models_used = chatsync.jsonb_add_counts(u.models_used, EXCLUDED.models_used),
        sessions_created = u.sessions_created + EXCLUDED.sessions_created,
        updated_at = now();

    WITH per_user AS (
        SELECT user_id, sum(sent + received)::int AS messages,
               sum(input + output)::int AS tokens, sum(sessions)::int AS sessions
        FROM jsonb_to_recordset(deltas) AS x(
            user_id uuid, sent int, received int, input int, output int, sessions int)
        GROUP BY user_id
    )
    UPDATE public.profiles AS p SET
        usage_stats = coalesce(p.usage_stats, '{}'::jsonb) || jsonb_build_object(
            'total_messages', coalesce((p.usage_stats ->> 'total_messages')::int, 0) + t.messages,
            'total_tokens', coalesce((p.usage_stats ->> 'total_tokens')::int, 0) + t.tokens,
            'sessions_created',
                coalesce((p.usage_stats ->> 'sessions_created')::int, 0) + t.sessions),
        last_active = now()
    FROM per_user AS t
    WHERE p.id = t.user_id AND (t.messages, t.tokens, t.sessions) <> (0, 0, 0);
END
$$;

-- Recomputes the derived statistics of the given sessions, writing only those that differ.
CREATE OR REPLACE FUNCTION chatsync.refresh_session_stats(session_ids text[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE public.chat_sessions AS s SET
        message_count = a.message_count,
        total_tokens = a.total_tokens,
        last_message_timestamp = a.last_message_timestamp,
        last_message_preview = a.last_message_preview,
        last_model = a.last_model
    FROM (
        SELECT ids.id,
               count(m.id)::int AS message_count,
               coalesce(sum(m.total_tokens), 0)::int AS total_tokens,
               max(m.message_timestamp) AS last_message_timestamp,
               (SELECT left(l.content, 200) FROM public.chat_messages AS l
                 WHERE l.session_id = ids.id
                 ORDER BY l.message_timestamp DESC, l.id DESC LIMIT 1) AS last_message_preview,
               (SELECT l.model FROM public.chat_messages AS l
                 WHERE l.session_id = ids.id
                 ORDER BY l.message_timestamp DESC, l.id DESC LIMIT 1) AS last_model
        FROM (SELECT DISTINCT unnest(session_ids) AS id) AS ids
        LEFT JOIN public.chat_messages AS m ON m.session_id = ids.id
        GROUP BY ids.id
    ) AS a
    WHERE s.id = a.id
      AND (s.message_count, s.total_tokens, s.last_message_timestamp, s.last_message_preview,
           s.last_model)
          IS DISTINCT FROM
          (a.message_count, a.total_tokens, a.last_message_timestamp, a.last_message_preview,
           a.last_model)
$$;

CREATE OR REPLACE FUNCTION chatsync.on_messages_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    -- Summed per (user, day, model) first, so a bulk insert hands apply_usage a few
    -- deltas rather than one JSON object per row.
    PERFORM chatsync.apply_usage(coalesce(jsonb_agg(jsonb_build_object(
        'user_id', user_id, 'day', day, 'model', model, 'sent', sent,
        'received', received, 'input', input, 'output', output, 'sessions', 0)), '[]'::jsonb))
    FROM (
        SELECT s.user_id, (n.message_timestamp AT TIME ZONE 'UTC')::date AS day, n.model,
               count(*) FILTER (WHERE n.role = 'user') AS sent,
               count(*) FILTER (WHERE n.role = 'assistant') AS received,
               sum(coalesce(n.input_tokens, 0)) AS input,
               sum(coalesce(n.output_tokens, 0)) AS output
        FROM new_rows AS n JOIN public.chat_sessions AS s ON s.id = n.session_id
        WHERE n.role IN ('user', 'assistant')
        GROUP BY 1, 2, 3
    ) AS per_day;

    PERFORM chatsync.refresh_session_stats(array_agg(DISTINCT session_id)) FROM new_rows;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION chatsync.on_messages_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    -- INSERT … ON CONFLICT DO UPDATE fires this even when nothing conflicted.
    IF NOT EXISTS (SELECT 1 FROM new_rows) THEN
        RETURN NULL;
    END IF;
    -- What each changed row contributed before (negated) and contributes now.
    PERFORM chatsync.apply_usage(coalesce(jsonb_agg(delta), '[]'::jsonb))
    FROM (
        SELECT jsonb_build_object(
                   'user_id', s.user_id,
                   'day', (r.message_timestamp AT TIME ZONE 'UTC')::date,
                   'model', r.model,
                   'sent', r.sign * (r.role = 'user')::int,
                   'received', r.sign * (r.role = 'assistant')::int,
                   'input', r.sign * coalesce(r.input_tokens, 0),
                   'output', r.sign * coalesce(r.output_tokens, 0),
                   'sessions', 0) AS delta
        FROM (
            SELECT -1 AS sign, o.* FROM old_rows AS o
            UNION ALL
            SELECT 1, n.* FROM new_rows AS n
        ) AS r
        JOIN public.chat_sessions AS s ON s.id = r.session_id
        WHERE r.role IN ('user', 'assistant')
          AND EXISTS (
              SELECT 1 FROM old_rows AS o JOIN new_rows AS n USING (id)
              WHERE o.id = r.id
                AND (o.session_id, o.role, o.model, o.input_tokens, o.output_tokens,
                     (o.message_timestamp AT TIME ZONE 'UTC')::date)
                    IS DISTINCT FROM
                    (n.session_id, n.role, n.model, n.input_tokens, n.output_tokens,
                     (n.message_timestamp AT TIME ZONE 'UTC')::date))
    ) AS deltas;

    PERFORM chatsync.refresh_session_stats(array_agg(DISTINCT session_id))
    FROM (SELECT session_id FROM old_rows UNION SELECT session_id FROM new_rows) AS touched;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION chatsync.on_messages_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM chatsync.refresh_session_stats(array_agg(DISTINCT session_id)) FROM old_rows;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION chatsync.on_sessions_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM chatsync.apply_usage(coalesce(jsonb_agg(jsonb_build_object(
        'user_id', n.user_id,
        'day', (coalesce(n.created_at, now()) AT TIME ZONE 'UTC')::date,
        'model', NULL, 'sent', 0, 'received', 0, 'input', 0, 'output', 0,
        'sessions', 1)), '[]'::jsonb))
    FROM new_rows AS n;
    RETURN NULL;
END
$$;

-- Replace the app's per-row trigger (present on existing deployments).
DROP TRIGGER IF EXISTS on_message_change ON public.chat_messages;
DROP TRIGGER IF EXISTS chatsync_messages_inserted ON public.chat_messages;
DROP TRIGGER IF EXISTS chatsync_messages_updated ON public.chat_messages;
DROP TRIGGER IF EXISTS chatsync_messages_deleted ON public.chat_messages;
DROP TRIGGER IF EXISTS chatsync_sessions_inserted ON public.chat_sessions;

CREATE TRIGGER chatsync_messages_inserted AFTER INSERT ON public.chat_messages
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chatsync.on_messages_inserted();
CREATE TRIGGER chatsync_messages_updated AFTER UPDATE ON public.chat_messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chatsync.on_messages_updated();
CREATE TRIGGER chatsync_messages_deleted AFTER DELETE ON public.chat_messages
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chatsync.on_messages_deleted();
CREATE TRIGGER chatsync_sessions_inserted AFTER INSERT ON public.chat_sessions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chatsync.on_sessions_inserted();
