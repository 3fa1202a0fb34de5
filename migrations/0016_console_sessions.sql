-- Console sessions (GET /ui/): a login with an admin API token opens one. Only a SHA-256
-- hash of the session id (32 random bytes, the cookie) is kept. A session made with a
-- named token ends with it (revoked or deleted); one made with the configured token keeps
-- a hash of that token and ends when the configuration changes it.
CREATE TABLE console_sessions (
    id_hash       bytea PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    principal     text NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'viewer')),
    tenant        text,
    token_id      uuid REFERENCES api_tokens (id) ON DELETE CASCADE,
    config_hash   bytea,
    csrf          text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
