// Workshop list: create (name, seats, api key), start with seat progress, stop and delete behind
// a confirmation, export download, link to each seat grid.

import { useState, type FormEvent } from 'react';
import { ApiError, api, describeError } from '../api/client';
import type { Workshop } from '../api/types';
import { TopBar } from '../components/TopBar';
import { ConfirmDialog } from '../components/ConfirmDialog';
import { navigate } from '../lib/router';
import { usePoll } from './usePoll';
import { downloadExport, statusTone } from './workshopActions';

type Pending = { kind: 'stop' | 'delete'; workshop: Workshop } | null;

export function WorkshopList({ token, signOut }: { token: string; signOut: (why?: string) => void }) {
  const [workshops, setWorkshops] = useState<Workshop[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [pending, setPending] = useState<Pending>(null);

  const handle = (err: unknown) => {
    if (err instanceof ApiError && err.status === 401) signOut('Your session has ended; sign in again.');
    else setError(describeError(err));
  };

  const reload = async (signal?: AbortSignal) => {
    try {
      const list = await api.listWorkshops(token, signal);
      setWorkshops(list.sort((a, b) => b.created_at.localeCompare(a.created_at)));
    } catch (err) {
      if (!signal?.aborted) handle(err);
    }
  };
  usePoll(reload, 2000, [token]);

  async function act(id: string, fn: () => Promise<unknown>) {
    setBusy(id);
    setError(null);
    try {
      await fn();
      await reload();
    } catch (err) {
      handle(err);
    } finally {
      setBusy(null);
    }
  }

  return (
    <div>
      <TopBar
        home="/instructor"
        right={
          <button type="button" className="btn ghost small" onClick={() => signOut()}>
            Sign out
          </button>
        }
      >
        <div className="meta">Instructor</div>
      </TopBar>
      <main className="page">
        <div className="page-head">
          <h1>Workshops</h1>
        </div>
        <CreateWorkshop token={token} onCreated={() => void reload()} onError={handle} />
        {error && (
          <div className="alert error" role="alert">
            {error}
          </div>
        )}
        <section className="card" aria-label="Your workshops">
          {workshops === null ? (
            <div className="empty" role="status">
              <span className="spinner" aria-hidden="true" /> Loading workshops…
            </div>
          ) : workshops.length === 0 ? (
            <div className="empty">No workshops yet. Create one above.</div>
          ) : (
            <table className="table">
              <thead>
                <tr>
                  <th scope="col">Workshop</th>
                  <th scope="col">Join code</th>
                  <th scope="col">Status</th>
                  <th scope="col">Seats</th>
                  <th scope="col">
                    <span className="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {workshops.map((w) => (
                  <tr key={w.id} data-workshop={w.id}>
                    <td>
                      <a href={`/instructor/workshops/${w.id}`} onClick={(e) => (e.preventDefault(), navigate(`/instructor/workshops/${w.id}`))}>
                        <strong>{w.name}</strong>
                      </a>
                      <div className="small muted mono">
                        {w.id}
                        {w.has_api_key ? ' · api key set' : ''}
                      </div>
                    </td>
                    <td>
                      <span className="code-chip">{w.code}</span>
                    </td>
                    <td>
                      <span className={`badge ${statusTone(w.status)}`}>{w.status}</span>
                    </td>
                    <td>
                      <SeatProgress w={w} />
                    </td>
                    <td>
                      <div className="actions">
                        {(w.status === 'created' || w.status === 'stopped' || w.status === 'failed') && (
                          <button type="button" className="btn small primary" disabled={busy === w.id} onClick={() => void act(w.id, () => api.startWorkshop(token, w.id))}>
                            Start
                          </button>
                        )}
                        {(w.status === 'running' || w.status === 'provisioning') && (
                          <button type="button" className="btn small danger" disabled={busy === w.id} onClick={() => setPending({ kind: 'stop', workshop: w })}>
                            Stop
                          </button>
                        )}
                        <button type="button" className="btn small" disabled={busy === w.id} onClick={() => void act(w.id, () => downloadExport(token, w.id, w.name))}>
                          Export
                        </button>
                        <button type="button" className="btn small ghost danger" disabled={busy === w.id || w.status === 'running'} title={w.status === 'running' ? 'Stop the workshop first' : undefined} onClick={() => setPending({ kind: 'delete', workshop: w })}>
                          Delete
                        </button>
                      </div>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
      </main>
      <ConfirmDialog
        open={pending !== null}
        title={pending?.kind === 'stop' ? `Stop “${pending.workshop.name}”?` : `Delete “${pending?.workshop.name}”?`}
        confirmLabel={pending?.kind === 'stop' ? 'Stop workshop' : 'Delete workshop'}
        danger
        onCancel={() => setPending(null)}
        onConfirm={() => {
          const p = pending;
          setPending(null);
          if (!p) return;
          void act(p.workshop.id, () =>
            p.kind === 'stop' ? api.stopWorkshop(token, p.workshop.id) : api.deleteWorkshop(token, p.workshop.id),
          );
        }}
      >
        <p style={{ margin: 0 }}>
          {pending?.kind === 'stop'
            ? 'Every learner is disconnected and every workspace is destroyed, along with the workshop’s api key. Export first if you want their files.'
            : 'The workshop and its records are removed for good.'}
        </p>
      </ConfirmDialog>
    </div>
  );
}

export function SeatProgress({ w }: { w: Workshop }) {
  const pct = w.seats ? Math.round((w.seats_ready / w.seats) * 100) : 0;
  return (
    <div style={{ display: 'grid', gap: 4 }}>
      <div className="progress" role="progressbar" aria-label="Seats ready" aria-valuemin={0} aria-valuemax={w.seats} aria-valuenow={w.seats_ready}>
        <span style={{ width: `${pct}%` }} />
      </div>
      <span className="small muted">
        {w.seats_ready}/{w.seats} ready · {w.seats_joined} joined
      </span>
    </div>
  );
}

function CreateWorkshop({ token, onCreated, onError }: { token: string; onCreated: () => void; onError: (e: unknown) => void }) {
  const [name, setName] = useState('');
  const [seats, setSeats] = useState('10');
  const [apiKey, setApiKey] = useState('');
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const n = Number(seats);
    if (!name.trim()) return setProblem('Give the workshop a name.');
    if (!Number.isInteger(n) || n < 1 || n > 200) return setProblem('Seats must be a whole number from 1 to 200.');
    if (apiKey && apiKey.length < 10) return setProblem('The api key must be at least 10 characters.');
    setProblem(null);
    setBusy(true);
    try {
      await api.createWorkshop(token, { name: name.trim(), seats: n, ...(apiKey ? { api_key: apiKey } : {}) });
      setName('');
      setApiKey('');
      onCreated();
    } catch (err) {
      if (err instanceof ApiError && err.status === 422) setProblem(err.message);
      else onError(err);
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="card create-form" onSubmit={submit} aria-label="Create a workshop" noValidate>
      <label className="field">
        Name
        <input className="input" name="name" value={name} maxLength={100} onChange={(e) => setName(e.target.value)} placeholder="Intro to Python" />
      </label>
      <label className="field">
        Seats
        <input className="input" name="seats" type="number" min={1} max={200} value={seats} onChange={(e) => setSeats(e.target.value)} />
      </label>
      <label className="field">
        <span>
          API key <span className="hint">(optional, injected into seats, never shown again)</span>
        </span>
        <input className="input" name="api_key" type="password" autoComplete="off" value={apiKey} onChange={(e) => setApiKey(e.target.value)} />
      </label>
      <button type="submit" className="btn primary" style={{ height: 40 }} disabled={busy}>
        {busy && <span className="spinner" aria-hidden="true" />}
        Create workshop
      </button>
      {problem && (
        <div className="alert error" role="alert" style={{ gridColumn: '1 / -1' }}>
          {problem}
        </div>
      )}
    </form>
  );
}
