-- Test-only: the last version of every session and message that ever reached the remote,
-- kept after a delete, so the tests can compute usage truth from the rows themselves.
CREATE SCHEMA test_audit;
CREATE TABLE test_audit.sessions_ever (id text PRIMARY KEY, user_id uuid, created_at timestamptz);
CREATE TABLE test_audit.messages_ever (
    id text PRIMARY KEY, session_id text, role text, model text, input_tokens int,
    output_tokens int, message_timestamp timestamptz, elapsed_time int
);

CREATE FUNCTION test_audit.keep_session() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO test_audit.sessions_ever VALUES (NEW.id, NEW.user_id, NEW.created_at)
    ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, created_at = EXCLUDED.created_at;
    RETURN NULL;
END $$;
CREATE FUNCTION test_audit.keep_message() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO test_audit.messages_ever VALUES (NEW.id, NEW.session_id, NEW.role, NEW.model,
        coalesce(NEW.input_tokens, 0), coalesce(NEW.output_tokens, 0), NEW.message_timestamp,
        coalesce(NEW.elapsed_time, 0))
    ON CONFLICT (id) DO UPDATE SET session_id = EXCLUDED.session_id, role = EXCLUDED.role,
        model = EXCLUDED.model, input_tokens = EXCLUDED.input_tokens,
        output_tokens = EXCLUDED.output_tokens, message_timestamp = EXCLUDED.message_timestamp,
        elapsed_time = EXCLUDED.elapsed_time;
    RETURN NULL;
END $$;
-- Sessions only on insert: their owner attributes the messages' usage.
CREATE TRIGGER test_audit_session AFTER INSERT ON public.chat_sessions
    FOR EACH ROW EXECUTE FUNCTION test_audit.keep_session();
CREATE TRIGGER test_audit_message AFTER INSERT OR UPDATE ON public.chat_messages
    FOR EACH ROW EXECUTE FUNCTION test_audit.keep_message();
