-- Instructor browser sessions, the join limiter's counters and a generation per seat (issue 9).
-- Append-only: a later change gets its own file.

-- Short-lived tokens the web UI gets for the long-lived instructor token; only hashes are kept.
CREATE TABLE instructor_sessions (
    token_hash     TEXT PRIMARY KEY,
    instructor_id  TEXT NOT NULL REFERENCES instructors(id) ON DELETE CASCADE,
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL
);

CREATE INDEX instructor_sessions_by_expiry ON instructor_sessions(expires_at);

-- Failed-join counters per bucket (address prefix, workshop, reconnect-code budget), so a
-- restart does not hand an attacker a fresh budget. window_start is seconds since the epoch.
CREATE TABLE join_throttle (
    bucket        TEXT PRIMARY KEY,
    window_start  INTEGER NOT NULL,
    failures      INTEGER NOT NULL
);

-- Bumped by a seat reset; learner tokens carry it and older ones are refused.
ALTER TABLE seats ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
