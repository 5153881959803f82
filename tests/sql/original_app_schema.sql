-- A faithful copy of the chat web app's ORIGINAL PostgreSQL schema, written from
-- ../shared/seed/upstream-schema.md and sync-endpoint-flow.md, for compatibility tests and
-- the benchmark's baseline. It is deliberately NOT corrected: on_message_change calls
-- track_user_usage() on every INSERT *and every UPDATE* of a user/assistant message, on
-- current_date, so an endpoint that re-upserts every row re-counts the whole history.
--
-- Loads into an empty database with `psql -v ON_ERROR_STOP=1 -f`. Roles are cluster-wide
-- and the tests load this file many times, so role creation is guarded.
--
-- Departures from a real Supabase project, all about the platform rather than the app:
--   * `auth.users` holds only what the app's sign-up trigger reads (id, email,
--     raw_user_meta_data). Inserting a row there "signs up": the app's trigger creates the
--     profile. profiles.id has no foreign key to it (in Supabase it references
--     auth.users(id)), so a test may also sign up by inserting a profile directly.
--   * The app's activity log (user_activity_log, log_user_activity) is left out: the
--     sign-up trigger's log entry is not modelled.
--   * `authenticated` is created if missing; the connecting user is made a member so that
--     `SET ROLE authenticated` works for a non-superuser, as PostgREST's authenticator is.

-- ---------------------------------------------------------------------------------------
-- Supabase-compatible auth
-- ---------------------------------------------------------------------------------------
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN;
    END IF;
END
$$;

DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, 'authenticated', 'MEMBER') THEN
        EXECUTE format('GRANT authenticated TO %I', current_user);
    END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS auth;
GRANT USAGE ON SCHEMA auth TO authenticated;

-- As Supabase defines it: the `sub` claim of the JSON in the setting request.jwt.claims
-- (older PostgREST versions set request.jwt.claim.sub instead).
CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    )::uuid
$$;
GRANT EXECUTE ON FUNCTION auth.uid() TO authenticated;

CREATE TABLE IF NOT EXISTS auth.users (
    id                 uuid PRIMARY KEY,
    email              varchar(255),
    raw_user_meta_data jsonb DEFAULT '{}'::jsonb
);

-- ---------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------
CREATE TABLE public.profiles (
    id                uuid PRIMARY KEY,
    email             varchar(255) NOT NULL,
    full_name         varchar(255),
    avatar_url        text,
    default_model     varchar(100),
    temperature       numeric(3, 2),
    system_prompt     text,
    subscription_tier varchar(20) DEFAULT 'free'
        CHECK (subscription_tier IN ('free', 'pro', 'enterprise')),
    credits           integer DEFAULT 0,
    created_at        timestamptz DEFAULT now(),
    updated_at        timestamptz DEFAULT now(),
    last_active       timestamptz,
    usage_stats       jsonb DEFAULT '{"total_messages": 0, "total_tokens": 0, "sessions_created": 0}'::jsonb
);

CREATE TABLE public.chat_sessions (
    id                     text PRIMARY KEY,
    user_id                uuid NOT NULL REFERENCES public.profiles (id) ON DELETE CASCADE,
    title                  varchar(255) NOT NULL DEFAULT 'New Chat',
    created_at             timestamptz DEFAULT now(),
    updated_at             timestamptz DEFAULT now(),
    last_activity          timestamptz DEFAULT now(),
    message_count          integer DEFAULT 0,
    total_tokens           integer DEFAULT 0,
    last_model             varchar(100),
    is_active              boolean DEFAULT true,
    last_message_preview   text,
    last_message_timestamp timestamptz
);
CREATE INDEX idx_chat_sessions_user_id ON public.chat_sessions (user_id);
CREATE INDEX idx_chat_sessions_updated_at ON public.chat_sessions (updated_at DESC);
CREATE INDEX idx_chat_sessions_user_updated ON public.chat_sessions (user_id, updated_at DESC);

CREATE TABLE public.chat_messages (
    id                text PRIMARY KEY,
    session_id        text NOT NULL REFERENCES public.chat_sessions (id) ON DELETE CASCADE,
    role              varchar(20) NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content           text NOT NULL,
    model             varchar(100),
    total_tokens      integer DEFAULT 0,
    input_tokens      integer DEFAULT 0,
    output_tokens     integer DEFAULT 0,
    user_message_id   text,
    content_type      varchar(20) DEFAULT 'text' CHECK (content_type IN ('text', 'markdown')),
    elapsed_time      integer DEFAULT 0,
    completion_id     varchar(255),
    message_timestamp timestamptz NOT NULL DEFAULT now(),
    error_message     text,
    is_streaming      boolean DEFAULT false,
    metadata          jsonb DEFAULT '{}'::jsonb
);
CREATE INDEX idx_chat_messages_session_id ON public.chat_messages (session_id);
CREATE INDEX idx_chat_messages_timestamp ON public.chat_messages (message_timestamp);
CREATE INDEX idx_chat_messages_session_timestamp
    ON public.chat_messages (session_id, message_timestamp);
CREATE INDEX idx_chat_messages_completion_id ON public.chat_messages (completion_id);
CREATE INDEX idx_chat_messages_user_message_id ON public.chat_messages (user_message_id)
    WHERE user_message_id IS NOT NULL;

CREATE TABLE public.user_usage_daily (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid NOT NULL REFERENCES public.profiles (id) ON DELETE CASCADE,
    usage_date        date NOT NULL DEFAULT current_date,
    messages_sent     integer DEFAULT 0,
    messages_received integer DEFAULT 0,
    input_tokens      integer DEFAULT 0,
    output_tokens     integer DEFAULT 0,
    total_tokens      integer DEFAULT 0,
    models_used       jsonb DEFAULT '{}'::jsonb,
    sessions_created  integer DEFAULT 0,
    active_minutes    integer DEFAULT 0,
    estimated_cost    numeric(10, 4) DEFAULT 0,
    created_at        timestamptz DEFAULT now(),
    updated_at        timestamptz DEFAULT now(),
    UNIQUE (user_id, usage_date)
);
CREATE INDEX idx_user_usage_daily_user_date ON public.user_usage_daily (user_id, usage_date DESC);

-- A plain view, as the app has it: it runs with its owner's rights.
CREATE VIEW public.api_user_summary AS
SELECT
    p.id, p.email, p.full_name, p.avatar_url, p.default_model, p.temperature,
    p.system_prompt, p.subscription_tier, p.credits, p.created_at, p.last_active,
    p.usage_stats,
    coalesce((SELECT sum(u.messages_sent + u.messages_received) FROM public.user_usage_daily u
              WHERE u.user_id = p.id AND u.usage_date = current_date), 0) AS messages_today,
    coalesce((SELECT sum(u.total_tokens) FROM public.user_usage_daily u
              WHERE u.user_id = p.id AND u.usage_date = current_date), 0) AS tokens_today,
    (SELECT count(*) FROM public.chat_sessions s WHERE s.user_id = p.id) AS total_sessions
FROM public.profiles p;

-- ---------------------------------------------------------------------------------------
-- Profiles: the app stamps updated_at on every write, and on insert records when usage
-- counting started (usage_stats.last_reset). Signing up (a row in auth.users) creates the
-- profile, named from the OAuth metadata or the e-mail's local part; signing in again
-- refreshes email, name and avatar and marks the user active.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.update_updated_at_column() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    IF TG_OP = 'INSERT' THEN
        NEW.usage_stats := NEW.usage_stats || jsonb_build_object('last_reset', now()::text);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER update_profiles_updated_at
    BEFORE INSERT OR UPDATE ON public.profiles
    FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();

CREATE OR REPLACE FUNCTION public.handle_user_profile_sync() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    v_name text := coalesce(NEW.raw_user_meta_data ->> 'full_name',
                            NEW.raw_user_meta_data ->> 'name');
BEGIN
    IF EXISTS (SELECT 1 FROM public.profiles WHERE id = NEW.id) THEN
        UPDATE public.profiles SET
            email = NEW.email,
            full_name = coalesce(v_name, full_name, split_part(NEW.email, '@', 1)),
            avatar_url = coalesce(NEW.raw_user_meta_data ->> 'avatar_url', avatar_url),
            last_active = now(),
            updated_at = now()
        WHERE id = NEW.id;
    ELSE
        INSERT INTO public.profiles (id, email, full_name, avatar_url, last_active)
        VALUES (NEW.id, NEW.email, coalesce(v_name, split_part(NEW.email, '@', 1)),
                NEW.raw_user_meta_data ->> 'avatar_url', now());
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER on_auth_user_profile_sync
    AFTER INSERT OR UPDATE ON auth.users
    FOR EACH ROW EXECUTE FUNCTION public.handle_user_profile_sync();

-- ---------------------------------------------------------------------------------------
-- Row-level security
-- ---------------------------------------------------------------------------------------
ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.chat_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.chat_messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.user_usage_daily ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Users can view their own profile" ON public.profiles
    FOR SELECT USING (auth.uid() = id);
CREATE POLICY "Users can insert their own profile" ON public.profiles
    FOR INSERT WITH CHECK (auth.uid() = id);
CREATE POLICY "Users can update their own profile" ON public.profiles
    FOR UPDATE USING (auth.uid() = id);

CREATE POLICY "Users can view their own chat sessions" ON public.chat_sessions
    FOR SELECT USING (auth.uid() = user_id);
CREATE POLICY "Users can create their own chat sessions" ON public.chat_sessions
    FOR INSERT WITH CHECK (auth.uid() = user_id);
CREATE POLICY "Users can update their own chat sessions" ON public.chat_sessions
    FOR UPDATE USING (auth.uid() = user_id);
CREATE POLICY "Users can delete their own chat sessions" ON public.chat_sessions
    FOR DELETE USING (auth.uid() = user_id);

CREATE POLICY "Users can view messages from their sessions" ON public.chat_messages
    FOR SELECT USING (EXISTS (SELECT 1 FROM public.chat_sessions
                              WHERE chat_sessions.id = chat_messages.session_id
                                AND chat_sessions.user_id = auth.uid()));
CREATE POLICY "Users can create messages in their sessions" ON public.chat_messages
    FOR INSERT WITH CHECK (EXISTS (SELECT 1 FROM public.chat_sessions
                                   WHERE chat_sessions.id = chat_messages.session_id
                                     AND chat_sessions.user_id = auth.uid()));
CREATE POLICY "Users can update messages in their sessions" ON public.chat_messages
    FOR UPDATE USING (EXISTS (SELECT 1 FROM public.chat_sessions
                              WHERE chat_sessions.id = chat_messages.session_id
                                AND chat_sessions.user_id = auth.uid()));
CREATE POLICY "Users can delete messages in their sessions" ON public.chat_messages
    FOR DELETE USING (EXISTS (SELECT 1 FROM public.chat_sessions
                              WHERE chat_sessions.id = chat_messages.session_id
                                AND chat_sessions.user_id = auth.uid()));

-- Usage is written only by track_user_usage() (security definer); users may read their own.
CREATE POLICY "Users can view their own usage" ON public.user_usage_daily
    FOR SELECT USING (auth.uid() = user_id);

-- Supabase grants the API roles table privileges and lets RLS decide.
GRANT USAGE ON SCHEMA public TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON public.profiles, public.chat_sessions, public.chat_messages, public.user_usage_daily
    TO authenticated;
GRANT SELECT ON public.api_user_summary TO authenticated;

-- ---------------------------------------------------------------------------------------
-- Usage tracking (original): ADDS what it is given to (user, current_date)
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.track_user_usage(
    p_user_id           uuid,
    p_messages_sent     integer DEFAULT 0,
    p_messages_received integer DEFAULT 0,
    p_input_tokens      integer DEFAULT 0,
    p_output_tokens     integer DEFAULT 0,
    p_model_used        varchar(100) DEFAULT NULL,
    p_session_created   boolean DEFAULT false,
    p_active_minutes    integer DEFAULT 0  -- the app passes an assistant's elapsed_time
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    v_sessions integer := CASE WHEN p_session_created THEN 1 ELSE 0 END;
    v_models   jsonb := CASE WHEN p_model_used IS NOT NULL
                             THEN jsonb_build_object(p_model_used, 1) ELSE '{}'::jsonb END;
BEGIN
    INSERT INTO public.user_usage_daily AS u (
        user_id, usage_date, messages_sent, messages_received, input_tokens, output_tokens,
        total_tokens, models_used, sessions_created, active_minutes)
    VALUES (p_user_id, current_date, p_messages_sent, p_messages_received, p_input_tokens,
            p_output_tokens, p_input_tokens + p_output_tokens, v_models, v_sessions,
            p_active_minutes)
    ON CONFLICT (user_id, usage_date) DO UPDATE SET
        messages_sent = u.messages_sent + EXCLUDED.messages_sent,
        messages_received = u.messages_received + EXCLUDED.messages_received,
        input_tokens = u.input_tokens + EXCLUDED.input_tokens,
        output_tokens = u.output_tokens + EXCLUDED.output_tokens,
        total_tokens = u.total_tokens + EXCLUDED.total_tokens,
        models_used = CASE
            WHEN p_model_used IS NULL THEN u.models_used
            ELSE coalesce(u.models_used, '{}'::jsonb) || jsonb_build_object(
                p_model_used, coalesce((u.models_used ->> p_model_used)::integer, 0) + 1)
        END,
        sessions_created = u.sessions_created + EXCLUDED.sessions_created,
        active_minutes = u.active_minutes + EXCLUDED.active_minutes,
        updated_at = now();

    UPDATE public.profiles SET
        usage_stats = coalesce(usage_stats, '{}'::jsonb) || jsonb_build_object(
            'total_messages', coalesce((usage_stats ->> 'total_messages')::integer, 0)
                              + p_messages_sent + p_messages_received,
            'total_tokens', coalesce((usage_stats ->> 'total_tokens')::integer, 0)
                            + p_input_tokens + p_output_tokens,
            'sessions_created', coalesce((usage_stats ->> 'sessions_created')::integer, 0)
                                + v_sessions),
        last_active = now()
    WHERE id = p_user_id;
END
$$;

-- ---------------------------------------------------------------------------------------
-- Session statistics (original): per row, on every insert, update and delete of a message
-- (of any role, whatever changed) the session's statistics are recomputed and its
-- updated_at and last_activity set to now(). Usage: every insert and update of a user or
-- assistant message is counted again; an assistant message adds its elapsed_time to
-- active_minutes; sessions_created is never counted (false is passed).
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.update_session_stats() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    v_session_id text := CASE WHEN TG_OP = 'DELETE' THEN OLD.session_id ELSE NEW.session_id END;
    v_user_id    uuid;
BEGIN
    UPDATE public.chat_sessions SET
        message_count = (SELECT count(*) FROM public.chat_messages
                         WHERE session_id = v_session_id),
        total_tokens = (SELECT coalesce(sum(total_tokens), 0) FROM public.chat_messages
                        WHERE session_id = v_session_id),
        last_message_timestamp = (SELECT max(message_timestamp) FROM public.chat_messages
                                  WHERE session_id = v_session_id),
        last_message_preview = (SELECT left(content, 200) FROM public.chat_messages
                                WHERE session_id = v_session_id
                                ORDER BY message_timestamp DESC LIMIT 1),
        last_model = (SELECT model FROM public.chat_messages
                      WHERE session_id = v_session_id
                      ORDER BY message_timestamp DESC LIMIT 1),
        last_activity = now(),
        updated_at = now()
    WHERE id = v_session_id;

    -- The flaw: every UPDATE counts the message again, whatever changed (or nothing).
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.role IN ('user', 'assistant') THEN
        SELECT user_id INTO v_user_id FROM public.chat_sessions WHERE id = NEW.session_id;
        PERFORM public.track_user_usage(
            v_user_id,
            CASE WHEN NEW.role = 'user' THEN 1 ELSE 0 END,
            CASE WHEN NEW.role = 'assistant' THEN 1 ELSE 0 END,
            coalesce(NEW.input_tokens, 0),
            coalesce(NEW.output_tokens, 0),
            NEW.model,
            false,
            CASE WHEN NEW.role = 'assistant' THEN coalesce(NEW.elapsed_time, 0) ELSE 0 END
        );
    END IF;

    RETURN coalesce(NEW, OLD);
END
$$;

CREATE TRIGGER on_message_change
    AFTER INSERT OR UPDATE OR DELETE ON public.chat_messages
    FOR EACH ROW EXECUTE FUNCTION public.update_session_stats();

CREATE OR REPLACE FUNCTION public.update_session_timestamp() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    NEW.last_activity := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER on_session_updated
    BEFORE UPDATE ON public.chat_sessions
    FOR EACH ROW EXECUTE FUNCTION public.update_session_timestamp();

-- ---------------------------------------------------------------------------------------
-- Bulk sync function (original): defined by the app, unused by its endpoint. It upserts
-- from the endpoint's JSON (camelCase Conversation / ChatMessage objects), so it re-counts
-- exactly as the endpoint does.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.sync_user_conversations(
    user_uuid uuid, conversations_data jsonb
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    conv    jsonb;
    msg     jsonb;
    synced  integer := 0;
    errors  integer := 0;
BEGIN
    IF auth.uid() IS DISTINCT FROM user_uuid THEN
        RAISE EXCEPTION 'not allowed to sync conversations of another user';
    END IF;

    FOR conv IN SELECT * FROM jsonb_array_elements(conversations_data) LOOP
        BEGIN
            INSERT INTO public.chat_sessions (
                id, user_id, title, created_at, updated_at, message_count, total_tokens,
                last_model, last_message_preview, last_message_timestamp)
            VALUES (
                conv ->> 'id', user_uuid, coalesce(conv ->> 'title', 'New Chat'),
                coalesce((conv ->> 'createdAt')::timestamptz, now()),
                coalesce((conv ->> 'updatedAt')::timestamptz, now()),
                coalesce((conv ->> 'messageCount')::integer, 0),
                coalesce((conv ->> 'totalTokens')::integer, 0),
                conv ->> 'lastModel', conv ->> 'lastMessagePreview',
                (conv ->> 'lastMessageTimestamp')::timestamptz)
            ON CONFLICT (id) DO UPDATE SET
                title = EXCLUDED.title,
                updated_at = EXCLUDED.updated_at,
                message_count = EXCLUDED.message_count,
                total_tokens = EXCLUDED.total_tokens,
                last_model = EXCLUDED.last_model,
                last_message_preview = EXCLUDED.last_message_preview,
                last_message_timestamp = EXCLUDED.last_message_timestamp;

            FOR msg IN SELECT * FROM jsonb_array_elements(coalesce(conv -> 'messages', '[]')) LOOP
                INSERT INTO public.chat_messages (
                    id, session_id, role, content, model, total_tokens, input_tokens,
                    output_tokens, user_message_id, content_type, elapsed_time, completion_id,
                    message_timestamp, error_message)
                VALUES (
                    msg ->> 'id', conv ->> 'id', msg ->> 'role', msg ->> 'content',
                    msg ->> 'model',
                    coalesce((msg ->> 'total_tokens')::integer, 0),
                    coalesce((msg ->> 'input_tokens')::integer, 0),
                    coalesce((msg ->> 'output_tokens')::integer, 0),
                    msg ->> 'user_message_id',
                    coalesce(msg ->> 'contentType', 'text'),
                    coalesce((msg ->> 'elapsed_time')::integer, 0),
                    msg ->> 'completion_id',
                    coalesce((msg ->> 'timestamp')::timestamptz, now()),
                    CASE WHEN (msg ->> 'error')::boolean THEN 'Message failed' END)
                ON CONFLICT (id) DO UPDATE SET
                    content = EXCLUDED.content,
                    model = EXCLUDED.model,
                    total_tokens = EXCLUDED.total_tokens,
                    input_tokens = EXCLUDED.input_tokens,
                    output_tokens = EXCLUDED.output_tokens,
                    content_type = EXCLUDED.content_type,
                    elapsed_time = EXCLUDED.elapsed_time,
                    completion_id = EXCLUDED.completion_id,
                    error_message = EXCLUDED.error_message;
            END LOOP;
            synced := synced + 1;
        EXCEPTION WHEN OTHERS THEN
            errors := errors + 1;
        END;
    END LOOP;

    RETURN jsonb_build_object('synced', synced, 'errors', errors, 'syncTime', now());
END
$$;
GRANT EXECUTE ON FUNCTION public.sync_user_conversations(uuid, jsonb) TO authenticated;
GRANT EXECUTE ON FUNCTION public.track_user_usage(
    uuid, integer, integer, integer, integer, varchar, boolean, integer) TO authenticated;
