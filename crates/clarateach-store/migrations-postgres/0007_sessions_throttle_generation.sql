-- PostgreSQL spelling of ../migrations/0007_sessions_throttle_generation.sql (issue 9).

CREATE TABLE instructor_sessions (
    token_hash     TEXT PRIMARY KEY,
    instructor_id  TEXT NOT NULL REFERENCES instructors(id) ON DELETE CASCADE,
    created_at     TIMESTAMPTZ NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL
);

CREATE INDEX instructor_sessions_by_expiry ON instructor_sessions(expires_at);

-- window_start is seconds since the epoch.
CREATE TABLE join_throttle (
    bucket        TEXT PRIMARY KEY,
    window_start  BIGINT NOT NULL,
    failures      BIGINT NOT NULL
);

ALTER TABLE seats ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
