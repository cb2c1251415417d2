// The learner's "Ask for help" button and their place in the help queue: polled every 5 s while
// a request is open, so the learner sees "#2 in the queue" and then "someone is coming".

import { useCallback, useEffect, useRef, useState } from 'react';
import { api, describeError } from '../api/client';
import type { HelpStatusResponse } from '../api/types';
import type { SeatSession } from '../workspace/seatSession';
import { ConfirmDialog } from './ConfirmDialog';

export function useHelp(seat: SeatSession, openFile: () => string | null) {
  const [status, setStatus] = useState<HelpStatusResponse | null>(null);
  const [error, setError] = useState<string | null>(null);
  const refresh = useCallback(async () => {
    try {
      setStatus(await seat.call((t) => api.myHelp(t)));
    } catch {
      // The connection status bar tells the learner about outages.
    }
  }, [seat]);
  const ask = useCallback(
    async (message: string) => {
      try {
        const file = openFile();
        setStatus(await seat.call((t) => api.askHelp(t, { message: message || undefined, open_file: file ?? undefined })));
        setError(null);
      } catch (err) {
        setError(describeError(err));
      }
    },
    [seat, openFile],
  );
  const waiting = !!status?.request;
  useEffect(() => {
    void refresh();
    const t = setInterval(() => void refresh(), waiting ? 5000 : 30000);
    return () => clearInterval(t);
  }, [refresh, waiting]);
  return { status, error, ask };
}

export function HelpButton({ help }: { help: ReturnType<typeof useHelp> }) {
  const [open, setOpen] = useState(false);
  const [message, setMessage] = useState('');
  const input = useRef<HTMLInputElement>(null);
  const req = help.status?.request;
  return (
    <>
      {req ? (
        <span className={`badge ${req.status === 'claimed' ? 'ok' : 'warn'}`} role="status" aria-live="polite" data-testid="help-status">
          {req.status === 'claimed'
            ? `${req.claimed_by ?? 'Your instructor'} is on the way`
            : `Waiting for help${help.status?.position ? `: #${help.status.position} in the queue` : ''}`}
        </span>
      ) : (
        <button type="button" className="btn small" data-testid="ask-help" onClick={() => setOpen(true)}>
          Ask for help
        </button>
      )}
      {help.error && (
        <span className="small" role="alert" style={{ color: 'var(--danger)' }}>
          {help.error}
        </span>
      )}
      <ConfirmDialog
        open={open}
        title="Ask for help"
        confirmLabel="Ask for help"
        onCancel={() => setOpen(false)}
        onConfirm={() => {
          setOpen(false);
          void help.ask(message.trim());
          setMessage('');
        }}
      >
        <label className="small muted" htmlFor="help-message">
          What are you stuck on? (optional; your instructor also sees your last commands and open file)
        </label>
        <input
          id="help-message"
          ref={input}
          className="input"
          maxLength={500}
          value={message}
          onChange={(e) => setMessage(e.target.value)}
          data-testid="help-message"
        />
      </ConfirmDialog>
    </>
  );
}
