-- Initial schema, PostgreSQL spelling of ../migrations/0001_init.sql. Migrations are append-only
-- and keep the SQLite file's version number, so both back ends are at the same schema version:
-- INTEGER -> BIGINT (sqlx reads both as i64), BLOB -> BYTEA, timestamps -> TIMESTAMPTZ.

CREATE TABLE instructors (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE agent_tokens (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE workshops (
    id             TEXT PRIMARY KEY,
    instructor_id  TEXT NOT NULL REFERENCES instructors(id),
    name           TEXT NOT NULL,
    code           TEXT NOT NULL UNIQUE,
    seats          BIGINT NOT NULL,
    status         TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    image          TEXT,
    limits_json    TEXT NOT NULL,
    -- nonce || ciphertext of the api key (AEAD, key file in the data dir); NULL once stopped.
    api_key_enc    BYTEA
);

CREATE INDEX workshops_by_instructor ON workshops(instructor_id, created_at);

CREATE TABLE seats (
    workshop_id       TEXT NOT NULL REFERENCES workshops(id) ON DELETE CASCADE,
    seat              BIGINT NOT NULL,
    state             TEXT NOT NULL,
    agent_id          TEXT,
    odehash           TEXT,
    name              TEXT,
    joined_at         TIMESTAMPTZ,
    last_activity_at  TIMESTAMPTZ,
    PRIMARY KEY (workshop_id, seat)
);

CREATE UNIQUE INDEX seats_by_odehash ON seats(workshop_id, odehash);
CREATE INDEX seats_by_agent ON seats(agent_id);
