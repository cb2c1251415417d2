// What the learner sees when their seat moved to another machine (issue 13): its host was lost,
// or the instructor moved it. The files came back from object storage; terminal sessions are
// new. Polled like the toolkit notices; each move is shown once (its time is remembered).

import { useState } from 'react';
import { json } from '../api/client';
import type { components } from '../api/schema.gen';
import { usePoll } from '../pages/usePoll';
import type { SeatSession } from '../workspace/seatSession';

export type SessionSeat = components['schemas']['SessionSeatResponse'];

const SEEN_KEY = 'clarateach.moved.seen';

export const sessionSeat = (token: string) => json<SessionSeat>('/api/session/seat', { token });

/** The move to announce: one not acknowledged yet on this browser. */
export function unseenMove(seat: SessionSeat, seen: string | null): string | null {
  return seat.moved_at && seat.moved_at !== seen ? seat.moved_at : null;
}

export function MovedNotice({ seat }: { seat: SeatSession }) {
  const [movedAt, setMovedAt] = useState<string | null>(null);
  // Errors are the connection status bar's to report.
  usePoll(
    async () => {
      const m = unseenMove(await seat.call((t) => sessionSeat(t)), localStorage.getItem(SEEN_KEY));
      if (m) setMovedAt(m);
    },
    5000,
    [seat],
  );
  if (!movedAt) return null;
  return (
    <div className="alert info card toolkit-notice" role="status" aria-live="polite" data-testid="moved-notice">
      <strong>Your workspace moved to another machine</strong>
      <div className="small">Your saved files are back. Terminal sessions started fresh, so rerun anything that was running.</div>
      <button
        type="button"
        className="btn small"
        onClick={() => {
          localStorage.setItem(SEEN_KEY, movedAt);
          setMovedAt(null);
        }}
      >
        OK
      </button>
    </div>
  );
}
