-- Scale-out (issue 13): which control-plane replica holds each connected agent's session, so
-- any replica can route a seat's traffic to the agent's data path and hand a command for it to
-- the replica that holds it. `info_json` is what the agent said at registration (host name,
-- slots, memory, CPU, data URL, images); its data-path token is sealed with the replicas' shared
-- secret key. A row whose heartbeat is older than three heartbeat intervals is a dead replica's.
CREATE TABLE agent_presence (
    agent_id        TEXT PRIMARY KEY,
    replica_id      TEXT NOT NULL,
    info_json       TEXT NOT NULL,
    data_token_enc  BYTEA NOT NULL,
    heartbeat_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX agent_presence_by_replica ON agent_presence(replica_id);

-- Commands for an agent held by another replica, until that replica takes them (it is told by
-- NOTIFY on PostgreSQL). The payload is sealed: a seat spec carries the workshop's api key.
CREATE TABLE agent_commands (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    replica_id   TEXT NOT NULL,
    agent_id     TEXT NOT NULL,
    payload_enc  BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX agent_commands_by_replica ON agent_commands(replica_id, id);
