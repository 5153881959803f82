-- chatsync: existing-deployments=skip
-- The web app's tables, view and row-level security, for a database that has none of them.
-- An existing deployment already has these; chatsync records this migration as adopted
-- there and never runs it.

CREATE TABLE public.profiles (
    id                uuid PRIMARY KEY,
    email             varchar(255) NOT NULL,
    full_name         text,
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
    usage_stats       jsonb DEFAULT '{"total_messages": 0, "total_tokens": 0, "sessions_created": 0}'
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
CREATE INDEX chat_sessions_user_id ON public.chat_sessions (user_id);
CREATE INDEX chat_sessions_updated_at ON public.chat_sessions (updated_at DESC);
CREATE INDEX chat_sessions_user_updated ON public.chat_sessions (user_id, updated_at DESC);

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
    metadata          jsonb DEFAULT '{}'
);
CREATE INDEX chat_messages_session_id ON public.chat_messages (session_id);
CREATE INDEX chat_messages_timestamp ON public.chat_messages (message_timestamp);
CREATE INDEX chat_messages_session_timestamp
    ON public.chat_messages (session_id, message_timestamp);
CREATE INDEX chat_messages_completion_id ON public.chat_messages (completion_id);
CREATE INDEX chat_messages_user_message_id ON public.chat_messages (user_message_id)
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
    models_used       jsonb DEFAULT '{}',
    sessions_created  integer DEFAULT 0,
    active_minutes    integer DEFAULT 0,
    estimated_cost    numeric(10, 4) DEFAULT 0,
    created_at        timestamptz DEFAULT now(),
    updated_at        timestamptz DEFAULT now(),
    UNIQUE (user_id, usage_date)
);

-- security_invoker: a user reading the view sees only what row-level security lets them.
CREATE VIEW public.api_user_summary WITH (security_invoker = true) AS
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

CREATE FUNCTION public.update_session_timestamp() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    NEW.last_activity := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER on_session_updated BEFORE UPDATE ON public.chat_sessions
    FOR EACH ROW EXECUTE FUNCTION public.update_session_timestamp();

-- Policies call auth.uid() as `(SELECT auth.uid())`, an init plan evaluated once per
-- statement rather than once per row (the JSON claims are parsed once per batch).
ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.chat_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.chat_messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.user_usage_daily ENABLE ROW LEVEL SECURITY;

CREATE POLICY profiles_own ON public.profiles
    FOR ALL TO authenticated USING (id = (SELECT auth.uid())) WITH CHECK (id = (SELECT auth.uid()));
CREATE POLICY chat_sessions_own ON public.chat_sessions
    FOR ALL TO authenticated USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY chat_messages_own ON public.chat_messages
    FOR ALL TO authenticated
    USING (EXISTS (SELECT 1 FROM public.chat_sessions s
                   WHERE s.id = session_id AND s.user_id = (SELECT auth.uid())))
    WITH CHECK (EXISTS (SELECT 1 FROM public.chat_sessions s
                        WHERE s.id = session_id AND s.user_id = (SELECT auth.uid())));
-- Usage is written only by the analytics triggers (security definer), never by clients.
CREATE POLICY user_usage_daily_read_own ON public.user_usage_daily
    FOR SELECT TO authenticated USING (user_id = (SELECT auth.uid()));

GRANT USAGE ON SCHEMA public TO authenticated;
GRANT SELECT, INSERT, UPDATE ON public.profiles TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.chat_sessions, public.chat_messages TO authenticated;
GRANT SELECT ON public.user_usage_daily, public.api_user_summary TO authenticated;
