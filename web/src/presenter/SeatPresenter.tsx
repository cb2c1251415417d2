// The shadow terminal's presenting buttons: share this seat's terminal with every learner
// ("Spotlight"), and the seat's recordings with a replay player in a dialog.

import { useEffect, useState } from 'react';
import { api, describeError } from '../api/client';
import type { RecordingInfo } from '../api/types';
import { CastPlayer } from './CastPlayer';
import { parseCast, type Cast } from './asciicast';

export function SeatPresenter({ token, workshopId, seatNo, session, spotlit, onSpotlight }: {
  token: string;
  workshopId: string;
  seatNo: number;
  session: string;
  spotlit: boolean;
  onSpotlight: () => void;
}) {
  const [open, setOpen] = useState(false);
  const [note, setNote] = useState<string | null>(null);
  return (
    <>
      <button
        type="button"
        className={`btn small${spotlit ? ' primary' : ''}`}
        data-testid="spotlight-seat"
        title="Show this terminal, read-only, to every learner in a Presenter tab"
        onClick={() =>
          void (spotlit ? api.spotlightOff(token, workshopId) : api.spotlight(token, workshopId, seatNo, session))
            .then(onSpotlight)
            .catch((e) => setNote(describeError(e)))
        }
      >
        {spotlit ? 'Stop spotlight' : 'Spotlight'}
      </button>
      <button type="button" className="btn small" data-testid="open-recordings" onClick={() => setOpen(true)}>
        Recordings
      </button>
      {note && <span className="small muted">{note}</span>}
      {open && <Recordings token={token} workshopId={workshopId} seatNo={seatNo} onClose={() => setOpen(false)} />}
    </>
  );
}

function Recordings({ token, workshopId, seatNo, onClose }: { token: string; workshopId: string; seatNo: number; onClose: () => void }) {
  const [list, setList] = useState<RecordingInfo[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [cast, setCast] = useState<{ name: string; cast: Cast } | null>(null);
  useEffect(() => {
    let live = true;
    api
      .recordings(token, workshopId, seatNo)
      .then((r) => live && setList([...r.recordings].reverse()))
      .catch((e) => live && setError(describeError(e)));
    return () => {
      live = false;
    };
  }, [token, workshopId, seatNo]);
  const play = async (name: string) => {
    try {
      const text = await api.recording(token, workshopId, seatNo, name);
      setCast({ name, cast: parseCast(text) });
    } catch (e) {
      setError(describeError(e));
    }
  };
  return (
    <div className="overlay" role="presentation">
      <div className="card" role="dialog" aria-modal="true" aria-label={`Recordings of seat ${seatNo}`} style={{ width: 'min(1100px, 96vw)' }} data-testid="recordings-dialog">
        <div className="row" style={{ marginBottom: 8 }}>
          <strong>Recordings of seat {seatNo}</strong>
          <span style={{ flex: 1 }} />
          <button type="button" className="btn ghost small" onClick={onClose}>
            Close
          </button>
        </div>
        {error && <div className="alert error small">{error}</div>}
        {list === null && !error && <div className="muted small">Loading…</div>}
        {list?.length === 0 && <div className="muted small">No recordings yet: every terminal connection of the learner is recorded.</div>}
        {list && list.length > 0 && (
          <ul className="recording-list" data-testid="recording-list">
            {list.map((r) => (
              <li key={r.name}>
                <button type="button" className={`btn ghost small${cast?.name === r.name ? ' primary' : ''}`} onClick={() => void play(r.name)}>
                  {r.session} · {new Date(r.started_ms).toLocaleString()} · {Math.max(1, Math.round(r.bytes / 1024))} KiB
                </button>
              </li>
            ))}
          </ul>
        )}
        {cast && <CastPlayer key={cast.name} cast={cast.cast} label={`Recording ${cast.name}`} />}
      </div>
    </div>
  );
}
