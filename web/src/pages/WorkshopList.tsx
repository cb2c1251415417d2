// Workshop list: create (name, seats, api key, template or seat image), start with seat progress, stop and delete behind
// a confirmation, export download, link to each seat grid.

import { useEffect, useState, type FormEvent } from 'react';
import { ApiError, api, describeError } from '../api/client';
import type { SeatImage, Template, Workshop } from '../api/types';
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
  const [source, setSource] = useState('');
  const choices = useSeatChoices(token);
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
      await api.createWorkshop(token, {
        name: name.trim(),
        seats: n,
        ...(apiKey ? { api_key: apiKey } : {}),
        ...sourceFields(source),
      });
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
      <label className="field" style={{ gridColumn: '1 / -1' }}>
        <span>
          Template or seat image <span className="hint">(what every seat runs; the default is the host's own tools)</span>
        </span>
        <select className="input" name="source" value={source} onChange={(e) => setSource(e.target.value)}>
          <option value="">Host tools (no image)</option>
          {choices.templates.length > 0 && (
            <optgroup label="Templates">
              {choices.templates.map((t) => (
                <option key={t.name} value={`template:${t.name}`}>
                  {t.name} (image {t.image})
                </option>
              ))}
            </optgroup>
          )}
          {choices.images.length > 0 && (
            <optgroup label="Seat images">
              {choices.images.map((i) => (
                <option key={i.name} value={`image:${i.name}`}>
                  {i.name}
                </option>
              ))}
            </optgroup>
          )}
        </select>
      </label>
      <SourceFacts source={source} choices={choices} />
      {problem && (
        <div className="alert error" role="alert" style={{ gridColumn: '1 / -1' }}>
          {problem}
        </div>
      )}
    </form>
  );
}

interface SeatChoices {
  templates: Template[];
  images: SeatImage[];
}

/** The instructor's templates and the images the connected agents have, loaded once. */
function useSeatChoices(token: string): SeatChoices {
  const [choices, setChoices] = useState<SeatChoices>({ templates: [], images: [] });
  useEffect(() => {
    const ctl = new AbortController();
    Promise.all([api.listTemplates(token, ctl.signal), api.listImages(token, ctl.signal)])
      .then(([templates, images]) => setChoices({ templates, images }))
      .catch(() => {
        // Without them the form still creates host-tool workshops; the list's own poll
        // reports a lost session.
      });
    return () => ctl.abort();
  }, [token]);
  return choices;
}

/** `template:NAME` / `image:NAME` from the picker as the create request's fields. */
export function sourceFields(source: string): { template?: string; image?: string } {
  if (source.startsWith('template:')) return { template: source.slice('template:'.length) };
  if (source.startsWith('image:')) return { image: source.slice('image:'.length) };
  return {};
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(0)} MiB`;
}

/** What the chosen template or image holds, so the instructor knows before creating. */
function SourceFacts({ source, choices }: { source: string; choices: SeatChoices }) {
  const { template, image } = sourceFields(source);
  const t = template ? choices.templates.find((x) => x.name === template) : undefined;
  const imageName = t ? t.image : image;
  const i = imageName ? choices.images.find((x) => x.name === imageName) : undefined;
  if (!t && !i) return null;
  const packages = (i?.packages ?? []).map((p) => p.replace(/^(apt|npm|pip|node):/, ''));
  return (
    <div className="image-facts muted" data-testid="seat-source-facts">
      {t && (
        <div>
          Template <strong>{t.name}</strong>
          {t.description ? `: ${t.description}` : ''} · image {t.image}
          {t.files_bytes > 0 ? ' · starter files' : ''}
          {t.readme.trim() ? ' · README for learners' : ''}
          {t.check ? ` · check: ${t.check}` : ''}
        </div>
      )}
      {i ? (
        <div>
          Image <strong>{i.name}</strong>
          {i.description ? `: ${i.description}` : ''}
          {(i.size_bytes ?? 0) > 0 ? ` · ${mib(i.size_bytes ?? 0)}` : ''}
          {packages.length > 0 ? ` · ${packages.join(', ')}` : ''}
          {` · on ${i.agents.length} agent${i.agents.length === 1 ? '' : 's'}`}
        </div>
      ) : (
        t && <div>No connected agent has the image {t.image} yet; build it with `clarateach image build {t.image}`.</div>
      )}
    </div>
  );
}
