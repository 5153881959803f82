-- chatsync: existing-deployments=run
-- A Supabase-compatible auth.uid() and `authenticated` role where the database has none.
-- On Supabase both exist already and this migration changes nothing.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN;
    END IF;
    -- The syncing connection switches to `authenticated` inside each transaction so that
    -- row-level security applies to it; a non-superuser needs membership to do that.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, 'authenticated', 'MEMBER') THEN
        EXECUTE format('GRANT authenticated TO %I', current_user);
    END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS auth;
GRANT USAGE ON SCHEMA auth TO authenticated;

DO $$
BEGIN
    IF to_regprocedure('auth.uid()') IS NULL THEN
        -- As Supabase does: the `sub` claim of the JSON in request.jwt.claims.
        CREATE FUNCTION auth.uid() RETURNS uuid
        LANGUAGE sql STABLE
        AS $fn$
            SELECT nullif(
                coalesce(
                    nullif(current_setting('request.jwt.claim.sub', true), ''),
                    nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
                ),
                ''
            )::uuid
        $fn$;
        GRANT EXECUTE ON FUNCTION auth.uid() TO authenticated;
    END IF;
END
$$;
