-- Workshop templates (issue 11): an image, starter files, default limits, a check command and a
-- README, per instructor; and the starter a workshop was created with (a copy, so deleting or
-- changing the template later never changes a workshop's seats). Append-only.

CREATE TABLE templates (
    instructor_id  TEXT NOT NULL REFERENCES instructors(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    description    TEXT NOT NULL,
    image          TEXT NOT NULL,
    readme         TEXT NOT NULL,
    check_cmd      TEXT,
    limits_json    TEXT,
    -- Starter files as a gzipped tar; NULL when the template has none.
    files          BYTEA,
    files_sha256   TEXT,
    created_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (instructor_id, name)
);

CREATE TABLE workshop_starters (
    workshop_id    TEXT PRIMARY KEY REFERENCES workshops(id) ON DELETE CASCADE,
    template       TEXT NOT NULL,
    readme         TEXT NOT NULL,
    check_cmd      TEXT,
    files          BYTEA,
    files_sha256   TEXT
);
