-- Help requests of the instructor's queue (issue 10). `commands` is the JSON of the seat's last
-- commands with exit codes when the learner asked; timestamps as the other tables keep them.
CREATE TABLE help_requests (
    id            TEXT PRIMARY KEY,
    workshop_id   TEXT NOT NULL REFERENCES workshops(id) ON DELETE CASCADE,
    seat          INTEGER NOT NULL,
    name          TEXT,
    message       TEXT,
    cwd           TEXT,
    commands      TEXT NOT NULL,
    open_file     TEXT,
    status        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    claimed_by    TEXT,
    claimed_at    TEXT,
    resolved_at   TEXT
);
CREATE INDEX help_requests_by_workshop ON help_requests(workshop_id, status, created_at);
