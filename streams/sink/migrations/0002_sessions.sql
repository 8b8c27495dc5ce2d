-- Secrets the API generates once and every sink replica shares (cursor signatures, CSRF tokens).
CREATE TABLE api_secrets (
    name       text PRIMARY KEY,
    secret     bytea NOT NULL CHECK (octet_length(secret) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Browser sessions. Only a SHA-256 of the session id is stored: a copy of this table signs nobody in.
CREATE TABLE web_sessions (
    id_hash      bytea PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    source       text NOT NULL CHECK (source IN ('token', 'oidc')),
    principal    jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX web_sessions_expires ON web_sessions (expires_at);
CREATE INDEX web_sessions_last_seen ON web_sessions (last_seen_at);

-- Single sign-on attempts between the redirect to the identity provider and its callback.
CREATE TABLE signin_attempts (
    state_hash    bytea PRIMARY KEY CHECK (octet_length(state_hash) = 32),
    browser_hash  bytea NOT NULL CHECK (octet_length(browser_hash) = 32),
    code_verifier text NOT NULL,
    nonce         text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX signin_attempts_expires ON signin_attempts (expires_at);
