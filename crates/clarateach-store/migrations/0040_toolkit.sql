-- Broadcast, checks and audit (issue 10). A broadcast's base (what a seat last got for a path)
-- is kept here, host-side, never in the learner-writable seat: `broadcast_blobs` holds each
-- content once per workshop by SHA-256, `broadcast_bases` names it per seat and path.
-- `toolkit_latest` keeps the latest broadcast report, check run and stored check command as
-- JSON documents, one per kind. `audit_events` is append-only.
CREATE TABLE broadcast_blobs (
    workshop_id   TEXT NOT NULL REFERENCES workshops(id) ON DELETE CASCADE,
    hash          TEXT NOT NULL,
    content       BLOB NOT NULL,
    PRIMARY KEY (workshop_id, hash)
);
CREATE TABLE broadcast_bases (
    workshop_id   TEXT NOT NULL REFERENCES workshops(id) ON DELETE CASCADE,
    seat          INTEGER NOT NULL,
    path          TEXT NOT NULL,
    hash          TEXT NOT NULL,
    PRIMARY KEY (workshop_id, seat, path)
);
CREATE TABLE toolkit_latest (
    workshop_id   TEXT NOT NULL REFERENCES workshops(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    body          TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (workshop_id, kind)
);
CREATE TABLE audit_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    workshop_id   TEXT NOT NULL REFERENCES workshops(id) ON DELETE CASCADE,
    at            TEXT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    seat          INTEGER,
    detail        TEXT
);
CREATE INDEX audit_events_by_workshop ON audit_events(workshop_id, id);
