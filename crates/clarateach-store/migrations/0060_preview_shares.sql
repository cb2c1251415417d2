-- Preview ports a learner made public (issue 12), in the store so a control-plane restart or
-- another replica keeps each port as the learner set it. A row means "public"; no row means
-- private (the default). `generation` is the seat's generation when the learner shared it: a
-- reset seat (a new generation, a new learner) starts with every port private again.
CREATE TABLE preview_shares (
    workshop_id  TEXT NOT NULL REFERENCES workshops(id) ON DELETE CASCADE,
    seat         INTEGER NOT NULL,
    port         INTEGER NOT NULL,
    generation   INTEGER NOT NULL,
    PRIMARY KEY (workshop_id, seat, port)
);
