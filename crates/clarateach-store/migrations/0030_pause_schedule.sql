-- Pause over breaks and a timed class start (issue 12). Append-only: a later change gets its
-- own file.

-- Who froze a paused seat: 'instructor' (the learner sees "paused by the instructor" until
-- resumed) or 'idle' (the idle policy; the learner's next connection resumes it). NULL when
-- the seat is not paused.
ALTER TABLE seats ADD COLUMN paused_by TEXT;

-- Idle policy: pause a ready seat after this many minutes without learner input or
-- connection. NULL: never.
ALTER TABLE workshops ADD COLUMN idle_pause_minutes INTEGER;

-- When the control plane starts the workshop by itself (a timestamp as every other column
-- here); NULL once started or when none is set.
ALTER TABLE workshops ADD COLUMN start_at TEXT;
