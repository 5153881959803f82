-- chatsync: existing-deployments=opt-in
-- The corrected analytics' update trigger (0006), counting set-based: the same figures,
-- in a fraction of the time.
--
-- 0006 turned every updated row's old and new contribution into a JSON object through a
-- function called per row (chatsync.message_usage, not inlined: jsonb_build_object is only
-- stable), and tested whether a row's contribution changed with a subquery per row. A push
-- of 800 edited messages spent ~150 ms there. Here the changed rows are found with one
-- join of the transition tables, and their contributions are summed per (user, day, model)
-- before apply_usage sees them, as the insert trigger already does. What is counted is
-- unchanged: a row counts (minus its old, plus its new contribution) only when its session,
-- role, model, counted tokens, elapsed time or UTC day changed, and only if its id did not;
-- the owner of every user or assistant message written gets a zero delta (its
-- profiles.last_active); every session touched is refreshed, as before.
--
-- Opt-in like 0003 and 0006: on an existing deployment it follows --corrected-analytics.

CREATE OR REPLACE FUNCTION chatsync.on_messages_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    -- INSERT … ON CONFLICT DO UPDATE fires this even when nothing conflicted.
    IF NOT EXISTS (SELECT 1 FROM new_rows) THEN
        RETURN NULL;
    END IF;
    PERFORM chatsync.apply_usage(coalesce(jsonb_agg(jsonb_build_object(
        'user_id', user_id, 'day', day, 'model', model, 'sent', sent,
        'received', received, 'input', input, 'output', output, 'active', active)),
        '[]'::jsonb))
    FROM (
        SELECT s.user_id, (r.message_timestamp AT TIME ZONE 'UTC')::date AS day, r.model,
               sum(r.sign * (r.role = 'user')::int) AS sent,
               sum(r.sign * (r.role = 'assistant')::int) AS received,
               sum(r.sign * greatest(coalesce(r.input_tokens, 0), 0)) AS input,
               sum(r.sign * greatest(coalesce(r.output_tokens, 0), 0)) AS output,
               sum(CASE WHEN r.role = 'assistant'
                        THEN r.sign * greatest(coalesce(r.elapsed_time, 0), 0)
                        ELSE 0 END) AS active
        FROM (
            SELECT -1 AS sign, o.session_id, o.role, o.model, o.input_tokens,
                   o.output_tokens, o.elapsed_time, o.message_timestamp,
                   n.session_id AS new_session_id, n.role AS new_role, n.model AS new_model,
                   n.input_tokens AS new_input_tokens, n.output_tokens AS new_output_tokens,
                   n.elapsed_time AS new_elapsed_time,
                   n.message_timestamp AS new_message_timestamp
            FROM old_rows AS o JOIN new_rows AS n USING (id)
            WHERE (o.session_id, o.role, o.model,
                   greatest(coalesce(o.input_tokens, 0), 0),
                   greatest(coalesce(o.output_tokens, 0), 0),
                   greatest(coalesce(o.elapsed_time, 0), 0),
                   (o.message_timestamp AT TIME ZONE 'UTC')::date)
                  IS DISTINCT FROM
                  (n.session_id, n.role, n.model,
                   greatest(coalesce(n.input_tokens, 0), 0),
                   greatest(coalesce(n.output_tokens, 0), 0),
                   greatest(coalesce(n.elapsed_time, 0), 0),
                   (n.message_timestamp AT TIME ZONE 'UTC')::date)
        ) AS c
        CROSS JOIN LATERAL (VALUES
            (c.sign, c.session_id, c.role, c.model, c.input_tokens, c.output_tokens,
             c.elapsed_time, c.message_timestamp),
            (1, c.new_session_id, c.new_role, c.new_model, c.new_input_tokens,
             c.new_output_tokens, c.new_elapsed_time, c.new_message_timestamp)
        ) AS r (sign, session_id, role, model, input_tokens, output_tokens, elapsed_time,
                message_timestamp)
        JOIN public.chat_sessions AS s ON s.id = r.session_id
        WHERE r.role IN ('user', 'assistant')
        GROUP BY 1, 2, 3
        UNION ALL
        SELECT DISTINCT s.user_id, (now() AT TIME ZONE 'UTC')::date, NULL::text,
               0, 0, 0, 0, 0
        FROM new_rows AS n JOIN public.chat_sessions AS s ON s.id = n.session_id
        WHERE n.role IN ('user', 'assistant')
    ) AS per_day;

    PERFORM chatsync.refresh_session_stats(array_agg(DISTINCT session_id), true)
    FROM (SELECT session_id FROM old_rows UNION SELECT session_id FROM new_rows) AS touched;
    RETURN NULL;
END
$$;
