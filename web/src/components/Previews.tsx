// "Open preview" for the web apps listening in a seat (issue 12). The list is polled (every 3 s
// for the learner, so a port shows up as soon as a server starts listening). Opening trades the
// token for a one-time ticket URL on the preview's own origin; the window is opened first, in the
// click, so popup blockers let it through, and it gets no handle back to this page.

import { useCallback, useEffect, useState } from 'react';
import { api, describeError } from '../api/client';
import type { Preview } from '../api/types';

type SeatRef = { workshop_id: string; seat: number };

/** Opens a preview in a new tab: blank first (inside the click), then the ticket URL. */
export async function openPreviewWindow(getUrl: () => Promise<string>): Promise<void> {
  const w = window.open('about:blank', '_blank');
  try {
    const url = await getUrl();
    if (w) {
      w.opener = null;
      w.location.href = url;
    } else {
      window.location.assign(url);
    }
  } catch (err) {
    w?.close();
    throw err;
  }
}

export function usePreviews(call: (fn: (token: string) => Promise<Preview[]>) => Promise<Preview[]>, seat?: SeatRef, everyMs = 3000) {
  const [previews, setPreviews] = useState<Preview[]>([]);
  const refresh = useCallback(async () => {
    try {
      setPreviews(await call((t) => api.listPreviews(t, seat)));
    } catch {
      // A paused or unreachable seat just shows no previews; the status bar tells the rest.
    }
  }, [call, seat?.workshop_id, seat?.seat]); // eslint-disable-line react-hooks/exhaustive-deps
  useEffect(() => {
    void refresh();
    const t = setInterval(() => void refresh(), everyMs);
    return () => clearInterval(t);
  }, [refresh, everyMs]);
  return { previews, refresh, setPreviews };
}

/** The learner's previews: one "Open preview" per listening port, and its public switch. */
export function PreviewButtons({ token, previews, onChange, seat }: { token: () => string; previews: Preview[]; onChange?: (p: Preview) => void; seat?: SeatRef }) {
  const [error, setError] = useState<string | null>(null);
  if (previews.length === 0) return null;
  return (
    <span className="row" style={{ gap: 6 }} data-testid="previews">
      {previews.map((p) => (
        <span key={p.port} className="row" style={{ gap: 4 }}>
          <button
            type="button"
            className="btn small"
            data-testid={`open-preview-${p.port}`}
            title={p.url}
            onClick={() => void openPreviewWindow(() => api.openPreview(token(), p.port, seat)).catch((e) => setError(describeError(e)))}
          >
            Open preview :{p.port}
          </button>
          {!seat && (
            <label className="small muted" title="Anyone with the link may open it">
              <input
                type="checkbox"
                data-testid={`public-preview-${p.port}`}
                checked={p.public}
                onChange={(e) =>
                  void api
                    .setPreviewPublic(token(), p.port, e.target.checked)
                    .then((next) => onChange?.(next))
                    .catch((err) => setError(describeError(err)))
                }
              />{' '}
              public
            </label>
          )}
        </span>
      ))}
      {error && (
        <span className="small" role="alert" style={{ color: 'var(--danger)' }}>
          {error}
        </span>
      )}
    </span>
  );
}
