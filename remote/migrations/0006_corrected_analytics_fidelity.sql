-- chatsync: existing-deployments=opt-in
-- The corrected analytics (0003), made to change only what was wrong (issue 9, items 4, 8, 9).
--
-- Opt-in like 0003: on an existing deployment it is applied with --corrected-analytics, or
-- by any later `chatsync migrate` once 0003 was applied there. Compared with 0003:
--
-- * active_minutes is maintained as the app's trigger does (an assistant message adds its
--   elapsed_time), but counted once per message like everything else: on insert, and on an
--   update only by the change, on the UTC day of the message's timestamp.
-- * sessions_created is no longer counted: the app never counts it (its trigger passes
--   false), so the opt-in must not start counting it. Counts 0003 already made are kept.
-- * Every written message row (insert, update, delete) bumps its session's updated_at and
--   last_activity, as the app's trigger does: the web app orders conversations by
--   updated_at. One session write per statement, not per row. A re-send that writes no row
--   fires nothing, so it still writes nothing.
-- * profiles.last_active is set by every insert and update of a user or assistant message,
--   as the app's usage function does, also when the message's usage is unchanged.
-- * Sums are bigint (the counters are bigint since 0005); usage_stats' JSON numbers are
--   added as numeric. Any int value a message can hold is counted without overflow.
-- * Tokens and elapsed times below zero (rows written by others; the schema allows them)
--   count as 0, so usage never goes down or negative because of them.
-- * Session statistics saturate at the int bounds of chat_sessions' columns rather than
--   failing the write.

CREATE OR REPLACE FUNCTION chatsync.apply_usage(deltas jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    WITH d AS (
        SELECT * FROM jsonb_to_recordset(deltas) AS x(
            user_id uuid, day date, model text, sent bigint, received bigint,
            input bigint, output bigint, active bigint)
    ),
    by_model AS (
        SELECT user_id, day, model,
               sum(sent) AS sent, sum(received) AS received, sum(input) AS input,
               sum(output) AS output, sum(coalesce(active, 0)) AS active
        FROM d GROUP BY user_id, day, model
    ),
    by_day AS (
        SELECT user_id, day,
               sum(sent)::bigint AS sent, sum(received)::bigint AS received,
               sum(input)::bigint AS input, sum(output)::bigint AS output,
               sum(active)::bigint AS active,
               coalesce(jsonb_object_agg(model, sent + received)
                        FILTER (WHERE model IS NOT NULL AND sent + received <> 0),
                        '{}'::jsonb) AS models
        FROM by_model GROUP BY user_id, day
    )
    INSERT INTO public.user_usage_daily AS u (
        user_id, usage_date, messages_sent, messages_received, input_tokens, output_tokens,
        total_tokens, models_used, active_minutes)
    SELECT user_id, day, sent, received, input, output, input + output, models, active
    FROM by_day
    WHERE (sent, received, input, output, active) <> (0, 0, 0, 0, 0) OR models <> '{}'
    ON CONFLICT (user_id, usage_date) DO UPDATE SET
        messages_sent = u.messages_sent + EXCLUDED.messages_sent,
        messages_received = u.messages_received + EXCLUDED.messages_received,
        input_tokens = u.input_tokens + EXCLUDED.input_tokens,
        output_tokens = u.output_tokens + EXCLUDED.output_tokens,
        total_tokens = u.total_tokens + EXCLUDED.total_tokens,
        models_used = chatsync.jsonb_add_counts(u.models_used, EXCLUDED.models_used),
        active_minutes = coalesce(u.active_minutes, 0) + EXCLUDED.active_minutes,
        updated_at = now();

    WITH per_user AS (
        SELECT user_id, sum(sent + received) AS messages, sum(input + output) AS tokens
        FROM jsonb_to_recordset(deltas) AS x(
            user_id uuid, sent bigint, received bigint, input bigint, output bigint)
        GROUP BY user_id
    )
    UPDATE public.profiles AS p SET
        usage_stats = coalesce(p.usage_stats, '{}'::jsonb) || jsonb_build_object(
            'total_messages',
                coalesce((p.usage_stats ->> 'total_messages')::numeric, 0) + t.messages,
            'total_tokens',
                coalesce((p.usage_stats ->> 'total_tokens')::numeric, 0) + t.tokens),
        last_active = now()
    FROM per_user AS t
    WHERE p.id = t.user_id;
END
$$;

-- Recomputes the statistics of the given sessions. bump: also set updated_at and
-- last_activity, as the app's trigger does for every message written.
CREATE OR REPLACE FUNCTION chatsync.refresh_session_stats(session_ids text[], bump boolean)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE public.chat_sessions AS s SET
        message_count = a.message_count,
        total_tokens = a.total_tokens,
        last_message_timestamp = a.last_message_timestamp,
        last_message_preview = a.last_message_preview,
        last_model = a.last_model,
        updated_at = CASE WHEN bump THEN now() ELSE s.updated_at END,
        last_activity = CASE WHEN bump THEN now() ELSE s.last_activity END
    FROM (
        SELECT ids.id,
               least(count(m.id), 2147483647)::int AS message_count,
               least(coalesce(sum(greatest(m.total_tokens, 0)), 0), 2147483647)::int
                   AS total_tokens,
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
      AND (bump OR (s.message_count, s.total_tokens, s.last_message_timestamp,
                    s.last_message_preview, s.last_model)
                   IS DISTINCT FROM
                   (a.message_count, a.total_tokens, a.last_message_timestamp,
                    a.last_message_preview, a.last_model))
$$;
DROP FUNCTION IF EXISTS chatsync.refresh_session_stats(text[]);

-- What one message contributes to usage: the app's counting, with what cannot be counted
-- (NULL, below zero) as 0.
CREATE OR REPLACE FUNCTION chatsync.message_usage(
    user_id uuid, role text, model text, input_tokens bigint, output_tokens bigint,
    elapsed_time bigint, message_timestamp timestamptz, sign int
) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'user_id', user_id,
        'day', (message_timestamp AT TIME ZONE 'UTC')::date,
        'model', model,
        'sent', sign * (role = 'user')::int,
        'received', sign * (role = 'assistant')::int,
        'input', sign * greatest(coalesce(input_tokens, 0), 0),
        'output', sign * greatest(coalesce(output_tokens, 0), 0),
        'active', CASE WHEN role = 'assistant'
                       THEN sign * greatest(coalesce(elapsed_time, 0), 0) ELSE 0 END)
$$;

CREATE OR REPLACE FUNCTION chatsync.on_messages_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    -- Summed per (user, day, model) first, so a bulk insert hands apply_usage a few
    -- deltas rather than one JSON object per row.
    PERFORM chatsync.apply_usage(coalesce(jsonb_agg(jsonb_build_object(
        'user_id', user_id, 'day', day, 'model', model, 'sent', sent,
        'received', received, 'input', input, 'output', output, 'active', active)),
        '[]'::jsonb))
    FROM (
        SELECT s.user_id, (n.message_timestamp AT TIME ZONE 'UTC')::date AS day, n.model,
               count(*) FILTER (WHERE n.role = 'user') AS sent,
               count(*) FILTER (WHERE n.role = 'assistant') AS received,
               sum(greatest(coalesce(n.input_tokens, 0), 0)) AS input,
               sum(greatest(coalesce(n.output_tokens, 0), 0)) AS output,
               coalesce(sum(greatest(coalesce(n.elapsed_time, 0), 0))
                        FILTER (WHERE n.role = 'assistant'), 0) AS active
        FROM new_rows AS n JOIN public.chat_sessions AS s ON s.id = n.session_id
        WHERE n.role IN ('user', 'assistant')
        GROUP BY 1, 2, 3
    ) AS per_day;

    PERFORM chatsync.refresh_session_stats(array_agg(DISTINCT session_id), true)
    FROM new_rows;
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
    -- What each row whose contribution changed contributed before (negated) and now, and
    -- a zero for the owner of every user or assistant message written (its last_active).
    PERFORM chatsync.apply_usage(coalesce(jsonb_agg(delta), '[]'::jsonb))
    FROM (
        SELECT chatsync.message_usage(
                   s.user_id, r.role, r.model, r.input_tokens, r.output_tokens,
                   r.elapsed_time, r.message_timestamp, r.sign) AS delta
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
            AND (o.session_id, o.role, o.model,
                 greatest(coalesce(o.input_tokens, 0), 0),
                 greatest(coalesce(o.output_tokens, 0), 0),
                 greatest(coalesce(o.elapsed_time, 0), 0),
                 (o.message_timestamp AT TIME ZONE 'UTC')::date)
                IS DISTINCT FROM
                (n.session_id, n.role, n.model,
                 greatest(coalesce(n.input_tokens, 0), 0),
                 greatest(coalesce(n.output_tokens, 0), 0),
                 greatest(coalesce(n.elapsed_time, 0), 0),
                 (n.message_timestamp AT TIME ZONE 'UTC')::date))
        UNION ALL
        SELECT DISTINCT chatsync.message_usage(
                   s.user_id, 'system', NULL, 0, 0, 0, now(), 0)
        FROM new_rows AS n JOIN public.chat_sessions AS s ON s.id = n.session_id
        WHERE n.role IN ('user', 'assistant')
    ) AS deltas;

    PERFORM chatsync.refresh_session_stats(array_agg(DISTINCT session_id), true)
    FROM (SELECT session_id FROM old_rows UNION SELECT session_id FROM new_rows) AS touched;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION chatsync.on_messages_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM chatsync.refresh_session_stats(array_agg(DISTINCT session_id), true)
    FROM old_rows;
    RETURN NULL;
END
$$;

-- The app never counts sessions_created; stop counting it.
DROP TRIGGER IF EXISTS chatsync_sessions_inserted ON public.chat_sessions;
DROP FUNCTION IF EXISTS chatsync.on_sessions_inserted();
