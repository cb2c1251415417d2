// One workshop: live seat grid (seats polled every 2 s, each card's terminal screen streamed
// live; unchanged seats never re-render), sortable and filterable by needs help / failing /
// idle / name, and the shadow terminal of the selected seat: read-only by default, with an
// explicit take-over toggle.

import { memo, useCallback, useEffect, useMemo, useState } from 'react';
import { ApiError, api, describeError } from '../api/client';
import type { HelpRequest, Seat, Spotlight, Workshop } from '../api/types';
import { PresenterBar } from '../presenter/Announcements';
import { SeatPresenter } from '../presenter/SeatPresenter';
import { HelpQueue } from '../components/HelpQueue';
import { PreviewButtons, usePreviews } from '../components/Previews';
import { ToolkitPanel } from '../components/ToolkitPanel';
import { checkBySeat, type CheckResult, type CheckRun } from '../api/toolkit';
import { TopBar } from '../components/TopBar';
import { ConfirmDialog } from '../components/ConfirmDialog';
import { TerminalView } from '../terminal/TerminalView';
import type { ConnectionStatus } from '../terminal/connection';
import { isValidSessionName, terminalUrl } from '../lib/termProtocol';
import { navigate } from '../lib/router';
import { usePoll } from './usePoll';
import { SeatProgress } from './WorkshopList';
import { downloadExport, relativeTime, statusTone } from './workshopActions';
import { arrangeSeats, idleLabel, idleSeconds, lastCommand, useScreens, type GridFilter, type GridSort, type ScreenFrame } from './screens';

function sameSeat(a: Seat, b: Seat): boolean {
  return (
    a.state === b.state && a.joined === b.joined && a.name === b.name && a.agent_id === b.agent_id &&
    a.joined_at === b.joined_at && a.last_activity_at === b.last_activity_at && a.moved_at === b.moved_at
  );
}

/** Keeps the previous object for every unchanged seat so memoized cards skip rendering. */
export function mergeSeats(prev: Seat[], next: Seat[]): Seat[] {
  const old = new Map(prev.map((s) => [s.seat, s]));
  let changed = prev.length !== next.length;
  const merged = next.map((s, i) => {
    const o = old.get(s.seat);
    const keep = o && sameSeat(o, s) ? o : s;
    if (keep !== prev[i]) changed = true;
    return keep;
  });
  return changed ? merged : prev;
}

export function WorkshopDetail({ token, id, signOut }: { token: string; id: string; signOut: (why?: string) => void }) {
  const [workshop, setWorkshop] = useState<Workshop | null>(null);
  const [seats, setSeats] = useState<Seat[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [selected, setSelected] = useState<number | null>(null);
  const [confirmStop, setConfirmStop] = useState(false);
  const [busy, setBusy] = useState(false);
  const [now, setNow] = useState(() => Date.now());
  const [help, setHelp] = useState<HelpRequest[]>([]);
  const [helpTick, setHelpTick] = useState(0);
  const [filter, setFilter] = useState<GridFilter>('all');
  const [sort, setSort] = useState<GridSort>('seat');
  const [spotlight, setSpotlight] = useState<Spotlight | null>(null);
  const [spotTick, setSpotTick] = useState(0);
  useEffect(() => {
    let live = true;
    api
      .getSpotlight(token, id)
      .then((r) => live && setSpotlight(r.spotlight ?? null))
      .catch(() => undefined);
    return () => {
      live = false;
    };
  }, [token, id, spotTick]);
  const [checkRun, setCheckRun] = useState<CheckRun | null>(null);
  const onCheck = useCallback((r: CheckRun | null) => setCheckRun(r), []);

  const handle = (err: unknown) => {
    if (err instanceof ApiError && err.status === 401) signOut('Your session has ended; sign in again.');
    else setError(describeError(err));
  };

  usePoll(
    async (signal) => {
      try {
        const [w, s, h] = await Promise.all([
          api.getWorkshop(token, id, signal),
          api.listSeats(token, id, signal),
          api.listHelp(token, id, signal),
        ]);
        setHelp((prev) => (JSON.stringify(prev) === JSON.stringify(h) ? prev : h));
        setWorkshop((prev) => (prev && JSON.stringify(prev) === JSON.stringify(w) ? prev : w));
        setSeats((prev) => mergeSeats(prev, s));
        setNow((n) => (Date.now() - n > 10_000 ? Date.now() : n));
        setError(null);
      } catch (err) {
        if (!signal.aborted) handle(err);
      }
    },
    2000,
    [token, id, helpTick],
  );

  async function act(fn: () => Promise<unknown>) {
    setBusy(true);
    try {
      await fn();
    } catch (err) {
      handle(err);
    } finally {
      setBusy(false);
    }
  }

  async function pauseAll(paused: boolean) {
    const after = await api.pauseSeats(token, id, paused);
    setSeats((prev) => mergeSeats(prev, after));
  }

  const running = workshop?.status === 'running' || workshop?.status === 'provisioning';
  const screens = useScreens(token, id, workshop?.status === 'running');
  const helpSeats = help.map((r) => r.seat);
  const shown = arrangeSeats(seats, filter, sort, { screens, help: helpSeats, now });
  const checks = checkBySeat(checkRun);
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
        <div className="meta">
          <a href="/instructor" onClick={(e) => (e.preventDefault(), navigate('/instructor'))}>
            Workshops
          </a>
          <span aria-hidden="true">/</span>
          <strong>{workshop?.name ?? id}</strong>
        </div>
      </TopBar>
      <main className="page">
        <div className="page-head">
          <h1>{workshop?.name ?? 'Workshop'}</h1>
          {workshop && <span className={`badge ${statusTone(workshop.status)}`}>{workshop.status}</span>}
          {workshop && (
            <span className="small muted">
              Join code <span className="code-chip">{workshop.code}</span>
            </span>
          )}
          <span className="spacer" />
          {workshop && <SeatProgress w={workshop} />}
          {workshop && !running && workshop.status !== 'stopping' && (
            <button type="button" className="btn primary" disabled={busy} onClick={() => void act(() => api.startWorkshop(token, id))}>
              Start
            </button>
          )}
          {running && seats.some((s) => s.state === 'ready') && (
            <button
              type="button"
              className="btn"
              disabled={busy}
              title="Freeze every seat over a break: processes, memory and terminals are kept"
              onClick={() => void act(() => pauseAll(true))}
            >
              Pause all
            </button>
          )}
          {running && seats.some((s) => s.state === 'paused') && (
            <button type="button" className="btn" disabled={busy} onClick={() => void act(() => pauseAll(false))}>
              Resume all
            </button>
          )}
          {running && (
            <button type="button" className="btn danger" disabled={busy} onClick={() => setConfirmStop(true)}>
              Stop
            </button>
          )}
          {workshop && (
            <button type="button" className="btn" disabled={busy} onClick={() => void act(() => downloadExport(token, id, workshop.name))}>
              Export
            </button>
          )}
        </div>
        {error && (
          <div className="alert error" role="alert">
            {error}
          </div>
        )}
        {selected !== null && workshop && (
          <ShadowTerminal
            key={selected}
            token={token}
            workshop={workshop}
            seat={seats.find((s) => s.seat === selected) ?? null}
            seatNo={selected}
            check={checks.get(selected)}
            onClose={() => setSelected(null)}
            spotlight={spotlight}
            onSpotlight={() => setSpotTick((t) => t + 1)}
          />
        )}
        <PresenterBar token={token} workshopId={id} spotlight={spotlight} onChanged={() => setSpotTick((t) => t + 1)} />
        {workshop?.status === 'running' && <ToolkitPanel token={token} workshopId={id} onCheck={onCheck} />}
        <HelpQueue
          token={token}
          workshopId={id}
          requests={help}
          now={now}
          onOpenSeat={setSelected}
          onChanged={() => setHelpTick((t) => t + 1)}
        />
        <section aria-label="Seats">
          <div className="row grid-controls" style={{ marginBottom: 10, gap: 10 }}>
            <label className="small muted" htmlFor="grid-filter">
              Show
            </label>
            <select id="grid-filter" className="input" style={{ width: 'auto', height: 30 }} value={filter} data-testid="grid-filter" onChange={(e) => setFilter(e.target.value as GridFilter)}>
              <option value="all">All seats</option>
              <option value="help">Needs help</option>
              <option value="failing">Failing</option>
              <option value="idle">Idle</option>
            </select>
            <label className="small muted" htmlFor="grid-sort">
              Sort by
            </label>
            <select id="grid-sort" className="input" style={{ width: 'auto', height: 30 }} value={sort} data-testid="grid-sort" onChange={(e) => setSort(e.target.value as GridSort)}>
              <option value="seat">Seat</option>
              <option value="name">Name</option>
              <option value="help">Needs help</option>
              <option value="failing">Failing first</option>
              <option value="idle">Most idle</option>
            </select>
            <span className="small muted">
              {shown.length} of {seats.length}
            </span>
          </div>
          <div className="seat-grid" data-testid="seat-grid">
            {shown.map((s) => (
              <SeatCard key={s.seat} seat={s} screen={screens.get(s.seat)} check={checks.get(s.seat)} now={now} selected={s.seat === selected} onSelect={setSelected} />
            ))}
          </div>
          {seats.length === 0 && !error && <div className="empty">Loading seats…</div>}
        </section>
      </main>
      <ConfirmDialog
        open={confirmStop}
        title="Stop this workshop?"
        confirmLabel="Stop workshop"
        danger
        busy={busy}
        onCancel={() => setConfirmStop(false)}
        onConfirm={() => {
          setConfirmStop(false);
          void act(() => api.stopWorkshop(token, id));
        }}
      >
        <p style={{ margin: 0 }}>
          Every learner is disconnected and every workspace is destroyed, along with the api key. Export first if you
          want their files.
        </p>
      </ConfirmDialog>
    </div>
  );
}

const SEAT_TONE: Record<Seat['state'], string> = {
  pending: '', creating: 'warn', ready: 'ok', lost: 'danger', failed: 'danger', destroyed: '', paused: 'warn', preparing: 'warn',
};

const SeatCard = memo(function SeatCard({ seat, screen, check, now, selected, onSelect }: { seat: Seat; screen: ScreenFrame | undefined; check?: CheckResult; now: number; selected: boolean; onSelect: (n: number) => void }) {
  const last = lastCommand(screen);
  const failing = !!last && last.exit_code !== null && last.exit_code !== 0;
  return (
    <button
      type="button"
      className="seat"
      aria-pressed={selected}
      data-seat={seat.seat}
      data-state={seat.state}
      data-failing={failing || undefined}
      data-check={check ? (check.passed ? 'pass' : 'fail') : undefined}
      onClick={() => onSelect(seat.seat)}
      aria-label={`Seat ${seat.seat}: ${seat.joined ? `taken by ${seat.name ?? 'a learner'}` : 'free'}, ${seat.state}. Open terminal.`}
    >
      <div className="seat-top">
        <span className="seat-no">Seat {seat.seat}</span>
        <span className={`badge ${SEAT_TONE[seat.state]}`}>{seat.state}</span>
        {seat.moved_at && (
          <span className="badge warn" data-testid="moved-badge" title={`Moved to another machine ${new Date(seat.moved_at).toLocaleTimeString()}`}>
            moved
          </span>
        )}
        {check && (
          <span className={`badge ${check.passed ? 'ok' : 'danger'}`} data-testid="check-badge">
            check {check.passed ? 'passed' : 'failed'}
          </span>
        )}
      </div>
      <div className="who">{seat.joined ? <strong>{seat.name ?? 'Anonymous learner'}</strong> : <span className="free">free</span>}</div>
      {screen && <SeatScreen screen={screen} />}
      {last && (
        <div className={`last-cmd ${failing ? 'fail' : 'pass'}`} data-testid="last-command" title={last.command}>
          <span className="mono">{last.command || '(command)'}</span>
          <span className={`badge ${failing ? 'danger' : 'ok'}`}>{last.exit_code === null ? '?' : `exit ${last.exit_code}`}</span>
        </div>
      )}
      <div className="activity">
        {screen && seat.joined
          ? idleLabel(idleSeconds(screen, now))
          : seat.joined
            ? `Active ${relativeTime(seat.last_activity_at ?? seat.joined_at ?? null, now)}`
            : '\u00a0'}
      </div>
    </button>
  );
});

/** The tail of the seat's terminal, as text (it is the learner's output), with the cursor. */
const SeatScreen = memo(function SeatScreen({ screen }: { screen: ScreenFrame }) {
  const { lines, cursor } = screen;
  return (
    <pre className="seat-screen" data-testid="seat-screen" aria-label="Terminal screen">
      {lines.map((l, i) => (
        <div key={i}>
          {cursor.visible && i === cursor.row ? (
            <>
              {l.slice(0, cursor.col)}
              <span className="cursor">{l.charAt(cursor.col) || ' '}</span>
              {l.slice(cursor.col + 1)}
            </>
          ) : (
            l || ' '
          )}
        </div>
      ))}
    </pre>
  );
});

function ShadowTerminal({ token, workshop, seat, seatNo, check, onClose, spotlight, onSpotlight }: { token: string; workshop: Workshop; seat: Seat | null; seatNo: number; check?: CheckResult; onClose: () => void; spotlight: Spotlight | null; onSpotlight: () => void }) {
  const [session, setSession] = useState('main');
  const [draft, setDraft] = useState('main');
  const [takeover, setTakeover] = useState(false);
  const [status, setStatus] = useState<ConnectionStatus>({ state: 'connecting' });
  const [note, setNote] = useState<string | null>(null);
  const [confirmReset, setConfirmReset] = useState(false);
  const [resetting, setResetting] = useState(false);
  const [newCode, setNewCode] = useState<string | null>(null);
  const mode = takeover ? 'takeover' : 'watch';

  async function resetSeat() {
    setResetting(true);
    try {
      const r = await api.resetSeat(token, workshop.id, seatNo);
      setNewCode(r.odehash);
      setNote(null);
    } catch (err) {
      setNote(describeError(err));
    } finally {
      setResetting(false);
      setConfirmReset(false);
    }
  }

  return (
    <section className="card shadow-panel" aria-label={`Seat ${seatNo} terminal`} data-testid="shadow-panel">
      <div className="panel-bar">
        <strong>Seat {seatNo}</strong>
        <span className="muted">{seat?.joined ? (seat.name ?? 'Anonymous learner') : 'free seat'}</span>
        <form
          className="row"
          onSubmit={(e) => {
            e.preventDefault();
            if (isValidSessionName(draft)) setSession(draft);
          }}
        >
          <label className="small muted" htmlFor="shadow-session">
            Session
          </label>
          <input id="shadow-session" className="input mono" style={{ width: 120, height: 30 }} value={draft} onChange={(e) => setDraft(e.target.value)} />
          <button type="submit" className="btn small" disabled={!isValidSessionName(draft) || draft === session}>
            Open
          </button>
        </form>
        <span className={`badge ${status.state === 'open' ? 'ok' : status.state === 'ended' ? 'danger' : 'warn'}`} role="status">
          {status.state === 'open' ? (takeover ? 'typing as instructor' : 'watching, read-only') : status.state === 'ended' ? status.reason : status.state}
        </span>
        <span className="spacer" style={{ flex: 1 }} />
        <label className="switch">
          <input type="checkbox" role="switch" checked={takeover} onChange={(e) => setTakeover(e.target.checked)} aria-describedby="takeover-hint" />
          Take over
        </label>
        <span id="takeover-hint" className="sr-only">
          Lets you type in the learner’s terminal; the learner sees a notice while it is on.
        </span>
        {seat?.joined && (
          <button type="button" className="btn small" data-testid="reset-seat" disabled={resetting} onClick={() => setConfirmReset(true)}>
            Reset learner
          </button>
        )}
        {(seat?.state === 'ready' || seat?.state === 'paused') && (
          <button
            type="button"
            className="btn small"
            data-testid="pause-seat"
            onClick={() => void api.pauseSeats(token, workshop.id, seat.state === 'ready', seatNo).catch(() => undefined)}
          >
            {seat.state === 'ready' ? 'Pause seat' : 'Resume seat'}
          </button>
        )}
        {seat?.state === 'ready' && <SeatPreviews token={token} workshopId={workshop.id} seatNo={seatNo} />}
        <SeatPresenter
          token={token}
          workshopId={workshop.id}
          seatNo={seatNo}
          session={session}
          spotlit={spotlight?.seat === seatNo && spotlight.session === session}
          onSpotlight={onSpotlight}
        />
        <button type="button" className="btn ghost small" onClick={onClose} aria-label="Close terminal">
          Close
        </button>
      </div>
      {newCode && (
        <div className="alert info small" role="status" data-testid="reset-code" style={{ borderRadius: 0 }}>
          Seat {seatNo} reset. New reconnect code <span className="code-chip">{newCode}</span>: the old code and every
          earlier sign-in of this seat no longer work. The seat’s files are kept.
        </div>
      )}
      {note && (
        <div className="alert warn small" role="status" style={{ borderRadius: 0 }}>
          {note}
        </div>
      )}
      {check && <CheckOutput check={check} />}
      <div className="terminal-stack">
        <TerminalView
          connectionKey={`${seatNo}:${session}:${mode}`}
          label={`Seat ${seatNo} terminal ${session}`}
          url={async () => {
            const { ticket } = await api.sessionTicket(token, { workshop_id: workshop.id, seat: seatNo, mode });
            return terminalUrl(location.href, { ticket, session, mode, workshopId: workshop.id, seat: seatNo });
          }}
          probe={async () => {
            try {
              const w = await api.getWorkshop(token, workshop.id);
              return w.status === 'running' ? 'retry' : { ended: `Workshop is ${w.status}.` };
            } catch (err) {
              return err instanceof ApiError && (err.status === 401 || err.status === 404) ? { ended: err.message } : 'retry';
            }
          }}
          interactive={takeover}
          sendResize={false}
          visible
          onStatus={(s) => {
            setStatus(s);
            if (s.state === 'open') setNote(null);
          }}
          onControl={(m) => {
            if (m.type === 'error' && m.code === 'read_only') setNote('Read-only: turn on “Take over” to type.');
            else if (m.type === 'error' && m.code !== 'resync') setNote(m.message || m.code);
          }}
        />
      </div>
      <ConfirmDialog
        open={confirmReset}
        title={`Reset seat ${seatNo}?`}
        confirmLabel="Reset learner"
        danger
        busy={resetting}
        onCancel={() => setConfirmReset(false)}
        onConfirm={() => void resetSeat()}
      >
        <p style={{ margin: 0 }}>
          The seat gets a new reconnect code; whoever holds the old code or is signed in to this seat is signed out.
          The seat’s files stay.
        </p>
      </ConfirmDialog>
    </section>
  );
}

/** The instructor's way into a learner's previews: the seat's listening ports, polled. */
function SeatPreviews({ token, workshopId, seatNo }: { token: string; workshopId: string; seatNo: number }) {
  const seat = useMemo(() => ({ workshop_id: workshopId, seat: seatNo }), [workshopId, seatNo]);
  const { previews } = usePreviews(useCallback((fn) => fn(token), [token]), seat, 5000);
  return <PreviewButtons token={() => token} previews={previews} seat={seat} />;
}

/** The seat's latest check result, as text (the output is the learner's program's). */
function CheckOutput({ check }: { check: CheckResult }) {
  return (
    <details className={`alert ${check.passed ? 'info' : 'warn'} small`} style={{ borderRadius: 0 }} data-testid="check-output" open={!check.passed}>
      <summary>
        Check {check.passed ? 'passed' : 'failed'}
        {check.exit_code !== null && check.exit_code !== undefined ? ` (exit ${check.exit_code})` : ''}
        {check.timed_out ? ', timed out' : ''}
        {check.error ? `: ${check.error}` : ''} in {check.duration_ms} ms
      </summary>
      {check.stdout && <pre className="mono check-out">{check.stdout}</pre>}
      {check.stderr && <pre className="mono check-out">{check.stderr}</pre>}
    </details>
  );
}
