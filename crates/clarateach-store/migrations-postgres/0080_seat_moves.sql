-- Seats moved to another agent (issue 13: host loss or an instructor's move): the last move
-- of each seat, for the learner's "moved to another machine" and the instructor's grid.
CREATE TABLE seat_moves (
    workshop_id  TEXT NOT NULL REFERENCES workshops(id) ON DELETE CASCADE,
    seat         BIGINT NOT NULL,
    from_agent   TEXT NOT NULL,
    moved_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workshop_id, seat)
);
