-- PostgreSQL spelling of ../migrations/0002_agent_token_binding.sql (issue 9): a token is for
-- one agent id; revoked_at set means refused, rows are never deleted.
ALTER TABLE agent_tokens ADD COLUMN bound_agent_id TEXT;
ALTER TABLE agent_tokens ADD COLUMN revoked_at TIMESTAMPTZ;
CREATE INDEX agent_tokens_bound_agent_id ON agent_tokens (bound_agent_id);
