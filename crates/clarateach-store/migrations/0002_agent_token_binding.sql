-- An agent token is for one agent id (issue 9): `bound_agent_id` is set when the token is issued
-- with `clarateach agent token --id NAME`, or, for a token issued before this migration, when it
-- first registers (and only if no live token is bound to that id yet). `revoked_at` set means
-- the token is refused; rows are never deleted so a revoked hash cannot be re-inserted.
ALTER TABLE agent_tokens ADD COLUMN bound_agent_id TEXT;
ALTER TABLE agent_tokens ADD COLUMN revoked_at TEXT;
CREATE INDEX agent_tokens_bound_agent_id ON agent_tokens (bound_agent_id);
