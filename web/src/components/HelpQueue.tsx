// The instructor's help queue: longest waiting first, each with what the learner did not have
// to type (cwd, last commands and exit codes, open file). Polled with the grid, so it survives
// a reload (it lives in the store). A new request plays a short sound (can be turned off,
// remembered) and shows in the tab title. Keys: j/k move, c claim, r resolve, o open the seat's
// terminal (also a click).

import { useEffect, useRef, useState } from 'react';
import { api, describeError } from '../api/client';
import type { HelpRequest } from '../api/types';
import { relativeTime } from '../pages/workshopActions';

const SOUND_KEY = 'clarateach.help.sound';

function beep() {
  try {
    const ctx = new AudioContext();
    const o = ctx.createOscillator();
    const g = ctx.createGain();
    o.frequency.value = 880;
    g.gain.value = 0.05;
    o.connect(g).connect(ctx.destination);
    o.start();
    o.stop(ctx.currentTime + 0.15);
    o.onended = () => void ctx.close();
  } catch {
    // No audio (autoplay policy before the first click, or no device): the badge still shows.
  }
}

export function HelpQueue({
  token, workshopId, requests, now, onOpenSeat, onChanged,
}: {
  token: string;
  workshopId: string;
  requests: HelpRequest[];
  now: number;
  onOpenSeat: (seat: number) => void;
  onChanged: () => void;
}) {
  const [sound, setSound] = useState(() => localStorage.getItem(SOUND_KEY) !== 'off');
  const [cursor, setCursor] = useState(0);
  const [error, setError] = useState<string | null>(null);
  const known = useRef<Set<string> | null>(null);

  useEffect(() => {
    const ids = new Set(requests.map((r) => r.id));
    if (known.current && sound && [...ids].some((id) => !known.current?.has(id))) beep();
    known.current = ids;
    const open = requests.filter((r) => r.status === 'open').length;
    document.title = open > 0 ? `(${open}) help · ClaraTeach` : 'ClaraTeach';
  }, [requests, sound]);

  async function act(r: HelpRequest | undefined, what: 'claim' | 'resolve') {
    if (!r) return;
    try {
      await (what === 'claim' ? api.claimHelp(token, workshopId, r.id) : api.resolveHelp(token, workshopId, r.id));
      setError(null);
      onChanged();
    } catch (err) {
      setError(describeError(err));
    }
  }

  const latest = useRef({ requests, cursor });
  latest.current = { requests, cursor };
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement | null;
      if (e.ctrlKey || e.metaKey || e.altKey || (t && t.closest('input, textarea, select, .xterm, [contenteditable]'))) return;
      const { requests: rs, cursor: c } = latest.current;
      const cur = rs[Math.min(c, rs.length - 1)];
      if (e.key === 'j') setCursor(Math.min(rs.length - 1, c + 1));
      else if (e.key === 'k') setCursor(Math.max(0, c - 1));
      else if (e.key === 'c') void act(cur, 'claim');
      else if (e.key === 'r') void act(cur, 'resolve');
      else if (e.key === 'o' && cur) onOpenSeat(cur.seat);
      else return;
      e.preventDefault();
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  });

  return (
    <section className="card help-queue" aria-label="Help queue" data-testid="help-queue">
      <div className="panel-bar">
        <strong>Help queue</strong>
        <span className={`badge ${requests.length ? 'warn' : ''}`}>{requests.length}</span>
        <span className="small muted">j/k move · c claim · r resolve · o open terminal</span>
        <span className="spacer" style={{ flex: 1 }} />
        <label className="switch small">
          <input
            type="checkbox"
            checked={sound}
            onChange={(e) => {
              setSound(e.target.checked);
              localStorage.setItem(SOUND_KEY, e.target.checked ? 'on' : 'off');
            }}
          />
          Sound
        </label>
      </div>
      {error && (
        <div className="alert error small" role="alert">
          {error}
        </div>
      )}
      {requests.length === 0 && <div className="small muted" style={{ padding: '8px 14px' }}>Nobody is waiting.</div>}
      <ol className="help-list">
        {requests.map((r, i) => {
          const failing = [...r.commands].reverse().find((c) => c.exit_code !== null && c.exit_code !== 0);
          return (
            <li key={r.id} className="help-item" aria-current={i === cursor} data-testid="help-item" data-seat={r.seat} data-status={r.status}>
              <button type="button" className="help-open" onClick={() => onOpenSeat(r.seat)} title="Open this seat's terminal">
                <strong>Seat {r.seat}</strong> {r.name ?? 'Anonymous learner'}
                <span className="small muted"> · waiting {relativeTime(r.created_at, now).replace(/ ago$/, '')}</span>
              </button>
              {r.message && <div className="help-message">“{r.message}”</div>}
              <div className="small mono help-context">
                {r.cwd && <div data-testid="help-cwd">cwd {r.cwd}</div>}
                {failing && (
                  <div data-testid="help-failing" style={{ color: 'var(--danger)' }}>
                    $ {failing.command} → exit {failing.exit_code}
                  </div>
                )}
                {r.open_file && <div>open file {r.open_file}</div>}
              </div>
              <div className="row" style={{ gap: 6 }}>
                {r.status === 'claimed' ? (
                  <span className="badge ok">{r.claimed_by ?? 'claimed'} on the way</span>
                ) : (
                  <button type="button" className="btn small" onClick={() => void act(r, 'claim')}>
                    On my way
                  </button>
                )}
                <button type="button" className="btn small" onClick={() => void act(r, 'resolve')}>
                  Resolved
                </button>
              </div>
            </li>
          );
        })}
      </ol>
    </section>
  );
}
