// Instructor sign-in: paste the token `clarateach up` printed (also in DATA_DIR/instructor.token);
// it is traded for a 12 h browser session at once and never stored.

import { useState, type FormEvent } from 'react';
import { ApiError, api, describeError } from '../api/client';
import { TopBar } from '../components/TopBar';
import { saveInstructorSession } from '../lib/storage';

export function InstructorSignIn({ onSignedIn, notice }: { onSignedIn: (token: string) => void; notice?: string | null }) {
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const t = token.trim();
    if (!t) {
      setError('Paste your instructor token.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      // Trade the long-lived token for a short-lived session once; only the session is kept.
      const session = await api.createInstructorSession(t);
      saveInstructorSession(session);
      setToken('');
      onSignedIn(session.token);
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? 'That token was not accepted.' : describeError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="center-page">
      <TopBar
        home="/instructor"
        right={
          <a className="btn ghost small" href="/">
            Learner join page
          </a>
        }
      />
      <main>
        <form className="card join-card" onSubmit={submit} aria-labelledby="signin-title" noValidate>
          <h1 id="signin-title">Instructor sign-in</h1>
          <p className="lead">
            Paste the instructor token printed by <code>clarateach up</code> (also saved as <code>instructor.token</code> in
            its data directory).
          </p>
          {notice && !error && (
            <div className="alert warn" role="status">
              {notice}
            </div>
          )}
          <label className="field">
            Instructor token
            <input
              className="input mono"
              type="password"
              name="token"
              autoComplete="current-password"
              value={token}
              onChange={(e) => setToken(e.target.value)}
              autoFocus
              aria-invalid={!!error}
            />
          </label>
          {error && (
            <div className="alert error" role="alert">
              {error}
            </div>
          )}
          <button type="submit" className="btn primary large" disabled={busy}>
            {busy && <span className="spinner" aria-hidden="true" />}
            Sign in
          </button>
        </form>
      </main>
    </div>
  );
}
