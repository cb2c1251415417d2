// Instructor side of announcements and the spotlight: post a banner to every learner, take
// banners down, and see / stop what is in the spotlight.

import { useEffect, useState } from 'react';
import { api, describeError } from '../api/client';
import type { Announcement, Spotlight } from '../api/types';

export function PresenterBar({ token, workshopId, spotlight, onChanged }: {
  token: string;
  workshopId: string;
  spotlight: Spotlight | null;
  onChanged: () => void;
}) {
  const [items, setItems] = useState<Announcement[]>([]);
  const [draft, setDraft] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);

  useEffect(() => {
    let live = true;
    api
      .announcements(token, workshopId)
      .then((r) => live && setItems(r.announcements))
      .catch((e) => live && setError(describeError(e)));
    return () => {
      live = false;
    };
  }, [token, workshopId, tick]);

  return (
    <section className="card presenter-bar" aria-label="Announcements and spotlight" data-testid="presenter-bar" style={{ padding: 12, marginBottom: 12 }}>
      <form
        className="row"
        style={{ gap: 8 }}
        onSubmit={(e) => {
          e.preventDefault();
          const message = draft.trim();
          if (!message) return;
          api
            .announce(token, workshopId, message)
            .then(() => {
              setDraft('');
              setError(null);
              setTick((t) => t + 1);
            })
            .catch((err) => setError(describeError(err)));
        }}
      >
        <label className="small muted" htmlFor="announce-input">
          Announce
        </label>
        <input id="announce-input" data-testid="announce-input" className="input" maxLength={500} placeholder="A banner every learner sees" value={draft} onChange={(e) => setDraft(e.target.value)} style={{ flex: 1 }} />
        <button type="submit" className="btn small primary" data-testid="announce-send" disabled={!draft.trim()}>
          Send
        </button>
        {spotlight && (
          <span className="badge ok" data-testid="spotlight-status">
            Spotlight: seat {spotlight.seat} · {spotlight.session}
            <button
              type="button"
              className="btn ghost small"
              onClick={() => void api.spotlightOff(token, workshopId).then(onChanged).catch((e) => setError(describeError(e)))}
            >
              Stop
            </button>
          </span>
        )}
      </form>
      {error && <div className="alert error small">{error}</div>}
      {items.length > 0 && (
        <ul className="announcement-list" data-testid="announcement-list">
          {items.map((a) => (
            <li key={a.id} className="row small" style={{ gap: 8 }}>
              <span style={{ flex: 1 }}>{a.message}</span>
              <span className="muted">{new Date(a.created_at).toLocaleTimeString()}</span>
              <button type="button" className="btn ghost small" onClick={() => void api.dismissAnnouncement(token, workshopId, a.id).then(() => setTick((t) => t + 1))}>
                Take down
              </button>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
