-- Named admin API tokens (issue 15.5): `triggerd token create | list | revoke`.
--
-- Only a SHA-256 hash of each token is kept: the token is 32 random bytes, so a fast hash
-- is enough (nothing to brute-force) and the API can find a token by its hash. `prefix`
-- is the token's first characters, for people to tell tokens apart; it is not a secret.
-- A revoked token keeps its row (revoked_at set), so its name stays taken and `token
-- list` still shows it.
CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text NOT NULL,
    role         text NOT NULL,
    tenant       text,                       -- null: every tenant
    hash         bytea NOT NULL,
    prefix       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,                -- written at most once a minute per token
    revoked_at   timestamptz,
    CONSTRAINT api_tokens_name_key UNIQUE (name),
    CONSTRAINT api_tokens_hash_key UNIQUE (hash),
    CONSTRAINT api_tokens_role_check CHECK (role IN ('admin', 'viewer')),
    CONSTRAINT api_tokens_hash_length CHECK (octet_length(hash) = 32)
);
