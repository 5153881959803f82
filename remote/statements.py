"""The SQL the push engine runs, one named constant each.

Rows are COPYed as text into a transaction-local staging table and cast in the upsert, so
a value PostgreSQL refuses fails in the upsert, where a range of rows can be retried to
find it, rather than failing the whole COPY.

The upserts compare only the columns the client owns. An unchanged row is then not updated
at all, and no trigger fires for it: re-sending is a no-op by construction. `updated_at`,
`last_activity` and the statistics are the server's and are never compared.
"""

PROFILE_EXISTS = "SELECT 1 FROM public.profiles WHERE id = %(user_id)s"
CREATE_PROFILE = """
INSERT INTO public.profiles (id, email) VALUES (%(user_id)s, %(email)s)
ON CONFLICT (id) DO NOTHING
"""

# The push transaction's id, read before its COMMIT: pg_xact_status() on it later tells
# whether the batch reached the remote.
CURRENT_XID = "SELECT pg_current_xact_id()::text"
XACT_STATUS = "SELECT pg_xact_status(%(xid)s::xid8)"

STAGE_SESSIONS = """
CREATE TEMP TABLE chatsync_stage_sessions (
    n int, id text, user_id text, title text, created_at text, updated_at text, is_active text,
    was_synced text
) ON COMMIT DROP
"""
COPY_SESSIONS = """
COPY chatsync_stage_sessions (n, id, user_id, title, created_at, updated_at, is_active,
    was_synced)
FROM STDIN
"""
UPSERT_SESSIONS = """
INSERT INTO public.chat_sessions AS s (id, user_id, title, created_at, updated_at, is_active)
SELECT id, user_id::uuid, title, created_at::timestamptz, updated_at::timestamptz,
       is_active::boolean
FROM chatsync_stage_sessions AS st
WHERE n >= %(lo)s AND n < %(hi)s
  AND (was_synced = '0' OR EXISTS (SELECT 1 FROM public.chat_sessions AS x WHERE x.id = st.id))
ON CONFLICT (id) DO UPDATE SET
    user_id = EXCLUDED.user_id,
    title = EXCLUDED.title,
    created_at = EXCLUDED.created_at,
    is_active = EXCLUDED.is_active
WHERE (s.user_id, s.title, s.created_at, s.is_active)
      IS DISTINCT FROM (EXCLUDED.user_id, EXCLUDED.title, EXCLUDED.created_at, EXCLUDED.is_active)
RETURNING s.id
"""

STAGE_MESSAGES = """
CREATE TEMP TABLE chatsync_stage_messages (
    n int, id text, session_id text, role text, content text, model text, total_tokens text,
    input_tokens text, output_tokens text, user_message_id text, content_type text,
    elapsed_time text, completion_id text, message_timestamp text, error text, error_message text,
    was_synced text
) ON COMMIT DROP
"""
COPY_MESSAGES = """
COPY chatsync_stage_messages (n, id, session_id, role, content, model, total_tokens,
    input_tokens, output_tokens, user_message_id, content_type, elapsed_time, completion_id,
    message_timestamp, error, error_message, was_synced)
FROM STDIN
"""
# The app keeps an error's text in error_message. The store keeps it too (pulled), beside the
# flag clients set: a flagged message is sent with its text, or 'error' when it has none, and
# an unflagged one with none. The text is compared, so a device's edit of the content never
# replaces the app's text.
UPSERT_MESSAGES = """
INSERT INTO public.chat_messages AS m (id, session_id, role, content, model, total_tokens,
    input_tokens, output_tokens, user_message_id, content_type, elapsed_time, completion_id,
    message_timestamp, error_message)
SELECT id, session_id, role, content, model, total_tokens::int, input_tokens::int,
       output_tokens::int, user_message_id, content_type, elapsed_time::int, completion_id,
       message_timestamp::timestamptz,
       CASE WHEN error::boolean THEN coalesce(error_message, 'error') END
FROM chatsync_stage_messages AS st
WHERE n >= %(lo)s AND n < %(hi)s
  AND (was_synced = '0' OR EXISTS (SELECT 1 FROM public.chat_messages AS x WHERE x.id = st.id))
ON CONFLICT (id) DO UPDATE SET
    session_id = EXCLUDED.session_id,
    role = EXCLUDED.role,
    content = EXCLUDED.content,
    model = EXCLUDED.model,
    total_tokens = EXCLUDED.total_tokens,
    input_tokens = EXCLUDED.input_tokens,
    output_tokens = EXCLUDED.output_tokens,
    user_message_id = EXCLUDED.user_message_id,
    content_type = EXCLUDED.content_type,
    elapsed_time = EXCLUDED.elapsed_time,
    completion_id = EXCLUDED.completion_id,
    message_timestamp = EXCLUDED.message_timestamp,
    error_message = EXCLUDED.error_message
WHERE (m.session_id, m.role, m.content, m.model, m.total_tokens, m.input_tokens,
       m.output_tokens, m.user_message_id, m.content_type, m.elapsed_time, m.completion_id,
       m.message_timestamp, m.error_message)
      IS DISTINCT FROM
      (EXCLUDED.session_id, EXCLUDED.role, EXCLUDED.content, EXCLUDED.model,
       EXCLUDED.total_tokens, EXCLUDED.input_tokens, EXCLUDED.output_tokens,
       EXCLUDED.user_message_id, EXCLUDED.content_type, EXCLUDED.elapsed_time,
       EXCLUDED.completion_id, EXCLUDED.message_timestamp, EXCLUDED.error_message)
RETURNING m.id
"""

# A row the remote had once (was_synced) but no longer has was deleted there, by another
# device or the server, after our last pull: it is not inserted again (that would revive it
# and count its usage twice). It stays dirty; the next pull applies the delete here.
GONE_SESSIONS = """
SELECT st.id FROM chatsync_stage_sessions AS st
WHERE st.was_synced = '1'
  AND NOT EXISTS (SELECT 1 FROM public.chat_sessions AS x WHERE x.id = st.id)
"""
GONE_MESSAGES = """
SELECT st.id FROM chatsync_stage_messages AS st
WHERE st.was_synced = '1'
  AND NOT EXISTS (SELECT 1 FROM public.chat_messages AS x WHERE x.id = st.id)
"""

# Under row-level security another user's rows are simply not visible, so these delete
# only the signed-in user's own.
DELETE_SESSIONS = "DELETE FROM public.chat_sessions WHERE id = ANY(%(ids)s)"
DELETE_MESSAGES = "DELETE FROM public.chat_messages WHERE id = ANY(%(ids)s)"
