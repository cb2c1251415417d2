-- Announcements and the spotlight of a workshop (issue 10), in the store so a control-plane
-- restart keeps them and every replica shows the same ones. `seq` orders announcements (oldest
-- first) and bounds them per workshop; a workshop has at most one spotlight.
CREATE TABLE announcements (
    seq           BIGSERIAL PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    workshop_id   TEXT NOT NULL REFERENCES workshops(id) ON DELETE CASCADE,
    message       TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX announcements_by_workshop ON announcements(workshop_id, seq);
CREATE TABLE spotlights (
    workshop_id   TEXT PRIMARY KEY REFERENCES workshops(id) ON DELETE CASCADE,
    seat          BIGINT NOT NULL,
    session       TEXT NOT NULL,
    since         TIMESTAMPTZ NOT NULL
);
