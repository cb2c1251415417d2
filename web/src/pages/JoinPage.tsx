// Learner entry: join with the workshop code (and a name), or rejoin a seat from another browser
// with the reconnect code. After a first join the reconnect code is shown before the IDE opens.

import { useId, useState, type FormEvent } from 'react';
import { api, describeError } from '../api/client';
import { TopBar } from '../components/TopBar';
import { isPlausibleJoinCode, normalizeJoinCode, normalizeReconnectCode } from '../lib/joinCode';
import { loadLearner, saveLearner, type LearnerSession } from '../lib/storage';
import { navigate } from '../lib/router';
import { preconnectTerminal } from '../components/TerminalPanel';
import { SeatSession } from '../workspace/seatSession';

type Mode = 'join' | 'rejoin';

export function JoinPage() {
  const params = new URLSearchParams(location.search);
  const [mode, setMode] = useState<Mode>(params.get('rejoin') ? 'rejoin' : 'join');
  const [code, setCode] = useState(params.get('code') ?? '');
  const [name, setName] = useState('');
  const [reconnect, setReconnect] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [joined, setJoined] = useState<LearnerSession | null>(null);
  const [existing, setExisting] = useState(loadLearner);
  const ids = useId();

  async function submit(e: FormEvent) {
    e.preventDefault();
    const normalized = normalizeJoinCode(code);
    if (!isPlausibleJoinCode(normalized)) {
      setError('Enter the workshop code your instructor shared, like CLAUDE-XY9Z.');
      return;
    }
    const odehash = mode === 'rejoin' ? normalizeReconnectCode(reconnect) : undefined;
    if (mode === 'rejoin' && !odehash) {
      setError('Enter the reconnect code you were given when you first joined.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const trimmedName = name.trim();
      const res = await api.join({
        code: normalized,
        ...(odehash ? { odehash } : {}),
        ...(mode === 'join' && trimmedName ? { name: trimmedName } : {}),
      });
      const session: LearnerSession = {
        token: res.token,
        odehash: res.odehash,
        code: normalized,
        workshop_id: res.workshop_id,
        workshop_name: res.workshop_name,
        seat: res.seat,
        ...(trimmedName ? { name: trimmedName } : {}),
      };
      saveLearner(session);
      if (mode === 'rejoin') {
        // The terminal's ticket and socket first (one short request), then the IDE renders
        // while the socket upgrades, the seat thaws and the scrollback arrives.
        await preconnectTerminal(new SeatSession(session));
        navigate('/workspace');
      } else setJoined(session);
    } catch (err) {
      setError(describeError(err, mode));
    } finally {
      setBusy(false);
    }
  }

  if (joined) {
    return (
      <div className="center-page">
        <TopBar />
        <main>
          <section className="card join-card" aria-labelledby={`${ids}-joined`}>
            <h1 id={`${ids}-joined`}>You're in: {joined.workshop_name}</h1>
            <p className="lead">Seat {joined.seat} is yours for the whole workshop.</p>
            <ReconnectCode value={joined.odehash} />
            <button
              type="button"
              className="btn primary large"
              autoFocus
              onClick={() => void preconnectTerminal(new SeatSession(joined)).then(() => navigate('/workspace'))}
            >
              Open my workspace
            </button>
          </section>
        </main>
      </div>
    );
  }

  return (
    <div className="center-page">
      <TopBar
        right={
          <a className="btn ghost small" href="/instructor">
            Instructor sign-in
          </a>
        }
      />
      <main>
        <section className="card join-card" aria-labelledby={`${ids}-title`}>
          <h1 id={`${ids}-title`}>Join a workshop</h1>
          <p className="lead">Your own Linux workspace with a terminal and an editor, right in the browser.</p>
          {existing && (
            <div className="alert info" role="region" aria-label="Your current seat">
              <div>
                You have seat {existing.seat} in <strong>{existing.workshop_name}</strong>.
              </div>
              <div className="row" style={{ marginTop: 8 }}>
                <button type="button" className="btn primary small" onClick={() => navigate('/workspace')}>
                  Continue
                </button>
                <button
                  type="button"
                  className="btn ghost small"
                  onClick={() => {
                    saveLearner(null);
                    setExisting(null);
                  }}
                >
                  Forget this seat
                </button>
              </div>
            </div>
          )}
          <div className="tabs" role="tablist" aria-label="How to join">
            {(['join', 'rejoin'] as const).map((m) => (
              <button
                key={m}
                type="button"
                role="tab"
                id={`${ids}-tab-${m}`}
                aria-selected={mode === m}
                aria-controls={`${ids}-form`}
                tabIndex={mode === m ? 0 : -1}
                onClick={() => {
                  setMode(m);
                  setError(null);
                }}
                onKeyDown={(e) => {
                  if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') {
                    const other = m === 'join' ? 'rejoin' : 'join';
                    setMode(other);
                    document.getElementById(`${ids}-tab-${other}`)?.focus();
                  }
                }}
              >
                {m === 'join' ? 'Join' : 'Rejoin a seat'}
              </button>
            ))}
          </div>
          <form
            id={`${ids}-form`}
            role="tabpanel"
            aria-labelledby={`${ids}-tab-${mode}`}
            onSubmit={submit}
            className="join-form"
            style={{ display: 'grid', gap: 14 }}
            noValidate
          >
            <label className="field">
              Workshop code
              <input
                className="input code"
                name="code"
                value={code}
                onChange={(e) => setCode(e.target.value)}
                placeholder="CLAUDE-XY9Z"
                autoComplete="off"
                autoCapitalize="characters"
                spellCheck={false}
                autoFocus
                required
                aria-invalid={!!error}
                aria-describedby={error ? `${ids}-error` : undefined}
              />
            </label>
            {mode === 'join' ? (
              <label className="field">
                <span>
                  Your name <span className="hint">(optional, shown to your instructor)</span>
                </span>
                <input
                  className="input"
                  name="name"
                  value={name}
                  maxLength={60}
                  onChange={(e) => setName(e.target.value)}
                  autoComplete="name"
                />
              </label>
            ) : (
              <label className="field">
                Reconnect code
                <input
                  className="input mono"
                  name="reconnect"
                  value={reconnect}
                  onChange={(e) => setReconnect(e.target.value)}
                  autoComplete="off"
                  spellCheck={false}
                  required
                />
              </label>
            )}
            {error && (
              <div className="alert error" role="alert" id={`${ids}-error`}>
                {error}
              </div>
            )}
            <button type="submit" className="btn primary large" disabled={busy}>
              {busy && <span className="spinner" aria-hidden="true" />}
              {mode === 'join' ? 'Join workshop' : 'Rejoin my seat'}
            </button>
          </form>
        </section>
      </main>
    </div>
  );
}

export function ReconnectCode({ value }: { value: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <div className="reconnect-box" role="region" aria-label="Reconnect code">
      <div className="small muted">
        Your reconnect code. Write it down: it brings you back to this seat from any browser.
      </div>
      <div className="row" style={{ justifyContent: 'space-between' }}>
        <span className="reconnect-code" data-testid="reconnect-code">
          {value}
        </span>
        <button
          type="button"
          className="btn small"
          onClick={() => {
            void navigator.clipboard
              ?.writeText(value)
              .then(() => setCopied(true))
              .catch(() => setCopied(false));
          }}
        >
          {copied ? 'Copied' : 'Copy'}
        </button>
      </div>
    </div>
  );
}
