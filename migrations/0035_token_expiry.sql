-- Tokens that end by themselves: `triggerd token create --expires-in 90d`. A token past
-- its `expires_at` is refused by the API (401) and ends the console sessions it opened;
-- its row stays, like a revoked token's, so `token list` shows it and its name stays
-- taken. Null: the token never expires (every token made before this migration).
ALTER TABLE api_tokens ADD COLUMN expires_at timestamptz;
