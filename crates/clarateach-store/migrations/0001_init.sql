-- Initial schema. Migrations are append-only: never edit a released file, add a new one.
-- Kept to portable SQL (TEXT/INTEGER/BLOB, partial-free indexes) so a PostgreSQL store can share it
-- with only the BLOB -> BYTEA spelling changed.

CREATE TABLE instructors (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE agent_tokens (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE workshops (
    id             TEXT PRIMARY KEY,
    instructor_id  TEXT NOT NULL REFERENCES instructors(id),
    name           TEXT NOT NULL,
    code           TEXT NOT NULL UNIQUE,
    seats          INTEGER NOT NULL,
    status         TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    image          TEXT,
    limits_json    TEXT NOT NULL,
    -- nonce || ciphertext of the api key (AEAD, key file in the data dir); NULL once stopped.
    api_key_enc    BLOB
);

CREATE INDEX workshops_by_instructor ON workshops(instructor_id, created_at);

CREATE TABLE seats (
    workshop_id       TEXT NOT NULL REFERENCES workshops(id) ON DELETE CASCADE,
    seat              INTEGER NOT NULL,
    state             TEXT NOT NULL,
    agent_id          TEXT,
    odehash           TEXT,
    name              TEXT,
    joined_at         TEXT,
    last_activity_at  TEXT,
    PRIMARY KEY (workshop_id, seat)
);

CREATE UNIQUE INDEX seats_by_odehash ON seats(workshop_id, odehash);
CREATE INDEX seats_by_agent ON seats(agent_id);
