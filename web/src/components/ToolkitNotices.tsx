// What the learner sees of the instructor's toolkit (issue 10): a badge while an instructor is
// watching or typing in their terminal (consent: nobody looks in unannounced), and a notice
// when a broadcast brought files, saying per file whether it was replaced, merged with their
// changes, or kept with the new version beside it. Both are polled; a broadcast is shown once
// (its id is remembered in localStorage).

import { useEffect, useState } from 'react';
import { describeOutcome, toolkit, type LearnerBroadcast, type Presence } from '../api/toolkit';
import type { SeatSession } from '../workspace/seatSession';

const SEEN_KEY = 'clarateach.broadcast.seen';

export function usePresence(seat: SeatSession): Presence {
  const [p, setP] = useState<Presence>({ watching: false, typing: false });
  useEffect(() => {
    let stop = false;
    const tick = async () => {
      try {
        const next = await seat.call((t) => toolkit.presence(t));
        if (!stop) setP((prev) => (prev.watching === next.watching && prev.typing === next.typing ? prev : next));
      } catch {
        // The connection status bar reports outages.
      }
    };
    void tick();
    const t = setInterval(() => void tick(), 3000);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, [seat]);
  return p;
}

export function PresenceBadge({ presence }: { presence: Presence }) {
  if (!presence.watching) return null;
  return (
    <span className={`badge ${presence.typing ? 'warn' : 'accent'} presence-badge`} role="status" aria-live="polite" data-testid="presence-badge">
      {presence.typing ? 'Instructor is typing in your terminal' : 'Instructor is watching your terminal'}
    </span>
  );
}

export function BroadcastNotice({ seat, onArrived }: { seat: SeatSession; onArrived?: () => void }) {
  const [shown, setShown] = useState<LearnerBroadcast | null>(null);
  useEffect(() => {
    let stop = false;
    const tick = async () => {
      try {
        const b = await seat.call((t) => toolkit.myBroadcast(t));
        if (stop || !b.id || b.files.length === 0 || localStorage.getItem(SEEN_KEY) === b.id) return;
        setShown(b);
        onArrived?.();
      } catch {
        // As above.
      }
    };
    void tick();
    const t = setInterval(() => void tick(), 5000);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, [seat, onArrived]);
  if (!shown) return null;
  return (
    <div className="alert info card toolkit-notice" role="status" aria-live="polite" data-testid="broadcast-notice">
      <strong>New files from your instructor</strong>
      <ul style={{ margin: '6px 0', paddingLeft: 18 }}>
        {shown.files.map((f) => (
          <li key={f.path} data-outcome={f.outcome} className="mono small">
            {describeOutcome(f)}
          </li>
        ))}
      </ul>
      <button
        type="button"
        className="btn small"
        onClick={() => {
          if (shown.id) localStorage.setItem(SEEN_KEY, shown.id);
          setShown(null);
        }}
      >
        OK
      </button>
    </div>
  );
}
