// The instructor's broadcast, check and audit tools (issue 10), one collapsible card on the
// workshop page. Broadcast: paste a file (path + content) or hand out a seat's directory; the
// answer shows per seat what happened (written / merged / conflicted / failed). Check: a command
// run in every running seat; the grid's cards take the pass/fail colours from `onCheck`.
// Audit: who watched, typed, broadcast, checked, reset or exported, newest first.
// Everything shown that came from a seat (output, paths) is rendered as text.

import { useEffect, useState } from 'react';
import { describeError } from '../api/client';
import { toolkit, type AuditEvent, type BroadcastReport, type CheckRun } from '../api/toolkit';

type Tab = 'broadcast' | 'check' | 'audit';

export function ToolkitPanel({ token, workshopId, onCheck }: { token: string; workshopId: string; onCheck: (run: CheckRun | null) => void }) {
  const [tab, setTab] = useState<Tab>('broadcast');
  return (
    <section className="card toolkit" aria-label="Instructor tools" data-testid="toolkit" style={{ marginBottom: 14 }}>
      <div className="row" role="tablist" style={{ gap: 6, padding: '8px 10px' }}>
        {(['broadcast', 'check', 'audit'] as Tab[]).map((t) => (
          <button key={t} type="button" role="tab" aria-selected={tab === t} className={`btn small ${tab === t ? 'primary' : 'ghost'}`} data-testid={`toolkit-tab-${t}`} onClick={() => setTab(t)}>
            {t === 'broadcast' ? 'Broadcast files' : t === 'check' ? 'Check everyone' : 'Audit'}
          </button>
        ))}
      </div>
      <div style={{ padding: '0 10px 10px' }}>
        {tab === 'broadcast' && <BroadcastForm token={token} workshopId={workshopId} />}
        {tab === 'check' && <CheckForm token={token} workshopId={workshopId} onCheck={onCheck} />}
        {tab === 'audit' && <AuditList token={token} workshopId={workshopId} />}
      </div>
    </section>
  );
}

function BroadcastForm({ token, workshopId }: { token: string; workshopId: string }) {
  const [path, setPath] = useState('');
  const [content, setContent] = useState('');
  const [fromSeat, setFromSeat] = useState('');
  const [dir, setDir] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [report, setReport] = useState<BroadcastReport | null>(null);

  useEffect(() => {
    const ctl = new AbortController();
    toolkit.latestBroadcast(token, workshopId, ctl.signal).then(setReport, () => undefined);
    return () => ctl.abort();
  }, [token, workshopId]);

  async function send(fromASeat: boolean) {
    setBusy(true);
    setError(null);
    try {
      const req = fromASeat ? { from_seat: Number(fromSeat), dir: dir || undefined } : { files: [{ path, content, encoding: 'utf8' as const }] };
      setReport(await toolkit.broadcast(token, workshopId, req));
    } catch (err) {
      setError(describeError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="stack" style={{ gap: 8 }}>
      <form className="stack" style={{ gap: 6 }} onSubmit={(e) => (e.preventDefault(), void send(false))}>
        <label className="small muted" htmlFor="bc-path">
          File path in every workspace
        </label>
        <input id="bc-path" className="input mono" placeholder="exercises/step2.py" value={path} data-testid="broadcast-path" onChange={(e) => setPath(e.target.value)} />
        <textarea className="input mono" rows={6} aria-label="File content" value={content} data-testid="broadcast-content" onChange={(e) => setContent(e.target.value)} />
        <div className="row">
          <button type="submit" className="btn primary small" disabled={busy || !path.trim()} data-testid="broadcast-send">
            Send to every seat
          </button>
          <span className="small muted">Edited files are merged; on a conflict the learner keeps theirs and gets name.new.</span>
        </div>
      </form>
      <form className="row" style={{ gap: 6 }} onSubmit={(e) => (e.preventDefault(), void send(true))}>
        <span className="small muted">or hand out seat</span>
        <input className="input" style={{ width: 70 }} inputMode="numeric" aria-label="Source seat" value={fromSeat} onChange={(e) => setFromSeat(e.target.value)} />
        <span className="small muted">directory</span>
        <input className="input mono" style={{ width: 180 }} aria-label="Source directory" placeholder="(whole workspace)" value={dir} onChange={(e) => setDir(e.target.value)} />
        <button type="submit" className="btn small" disabled={busy || !/^\d+$/.test(fromSeat)}>
          Send
        </button>
      </form>
      {error && (
        <div className="alert error small" role="alert">
          {error}
        </div>
      )}
      {report && <BroadcastResult report={report} />}
    </div>
  );
}

function BroadcastResult({ report }: { report: BroadcastReport }) {
  const count = (o: string) => report.seats.reduce((n, s) => n + s.files.filter((f) => f.outcome === o).length, 0);
  return (
    <div data-testid="broadcast-report">
      <div className="small">
        {report.files.length} file(s) to {report.seats.length} seat(s) in {report.duration_ms} ms: {count('written')} written, {count('merged')} merged,{' '}
        {count('conflicted')} conflicted, {count('failed')} failed
      </div>
      <table className="small" style={{ width: '100%' }}>
        <tbody>
          {report.seats.flatMap((s) =>
            s.files.map((f) => (
              <tr key={`${s.seat}:${f.path}`} data-testid="broadcast-row" data-seat={s.seat} data-outcome={f.outcome}>
                <td>Seat {s.seat}</td>
                <td className="mono">{f.path}</td>
                <td>
                  <span className={`badge ${f.outcome === 'failed' ? 'danger' : f.outcome === 'conflicted' ? 'warn' : 'ok'}`}>{f.outcome}</span>
                </td>
                <td className="mono muted">{f.outcome === 'conflicted' ? `new version: ${f.new_path ?? ''}` : (f.error ?? '')}</td>
              </tr>
            )),
          )}
        </tbody>
      </table>
    </div>
  );
}

function CheckForm({ token, workshopId, onCheck }: { token: string; workshopId: string; onCheck: (run: CheckRun | null) => void }) {
  const [command, setCommand] = useState('');
  const [timeout, setTimeoutS] = useState('30');
  const [save, setSave] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [run, setRun] = useState<CheckRun | null>(null);

  useEffect(() => {
    const ctl = new AbortController();
    toolkit.checks(token, workshopId, ctl.signal).then((c) => {
      const saved = c.saved;
      if (saved) {
        setCommand((prev) => prev || saved.command);
        setTimeoutS(String(saved.timeout_s));
      }
      setRun(c.latest ?? null);
      onCheck(c.latest ?? null);
    }, () => undefined);
    return () => ctl.abort();
  }, [token, workshopId, onCheck]);

  async function go() {
    setBusy(true);
    setError(null);
    try {
      const r = await toolkit.runCheck(token, workshopId, { command: command.trim() || undefined, timeout_s: Number(timeout) || undefined, save });
      setRun(r);
      onCheck(r);
    } catch (err) {
      setError(describeError(err));
    } finally {
      setBusy(false);
    }
  }

  const passed = run?.results.filter((r) => r.passed).length ?? 0;
  return (
    <div className="stack" style={{ gap: 8 }}>
      <form className="row" style={{ gap: 6 }} onSubmit={(e) => (e.preventDefault(), void go())}>
        <input className="input mono" style={{ flex: 1, minWidth: 200 }} aria-label="Check command" placeholder="pytest -q" value={command} data-testid="check-command" onChange={(e) => setCommand(e.target.value)} />
        <input className="input" style={{ width: 70 }} aria-label="Timeout in seconds" inputMode="numeric" value={timeout} onChange={(e) => setTimeoutS(e.target.value)} />
        <label className="small">
          <input type="checkbox" checked={save} onChange={(e) => setSave(e.target.checked)} /> store as this workshop’s check
        </label>
        <button type="submit" className="btn primary small" disabled={busy} data-testid="check-run">
          {busy ? 'Running…' : 'Run in every seat'}
        </button>
      </form>
      {error && (
        <div className="alert error small" role="alert">
          {error}
        </div>
      )}
      {run && (
        <div className="small" data-testid="check-summary">
          <span className="mono">$ {run.command}</span>: {passed}/{run.results.length} seats passed in {run.duration_ms} ms. Click a seat card for its output.
        </div>
      )}
    </div>
  );
}

function AuditList({ token, workshopId }: { token: string; workshopId: string }) {
  const [events, setEvents] = useState<AuditEvent[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const ctl = new AbortController();
    toolkit.audit(token, workshopId, ctl.signal).then(setEvents, (err) => setError(describeError(err)));
    return () => ctl.abort();
  }, [token, workshopId, tick]);
  return (
    <div className="stack" style={{ gap: 6 }} data-testid="audit-list">
      <div className="row">
        <span className="small muted">Every watch, take-over, broadcast, check, reset and export, newest first.</span>
        <button type="button" className="btn ghost small" onClick={() => setTick((t) => t + 1)}>
          Refresh
        </button>
      </div>
      {error && <div className="alert error small">{error}</div>}
      {events?.length === 0 && <div className="small muted">Nothing recorded yet.</div>}
      <table className="small" style={{ width: '100%' }}>
        <tbody>
          {(events ?? []).map((e, i) => (
            <tr key={i} data-testid="audit-row" data-action={e.action}>
              <td className="muted">{new Date(e.at).toLocaleTimeString()}</td>
              <td>{e.action.replace('_', '-')}</td>
              <td>{e.seat === null || e.seat === undefined ? 'all seats' : `seat ${e.seat}`}</td>
              <td>{e.actor_name ?? e.actor}</td>
              <td className="mono muted">{e.detail ?? ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
