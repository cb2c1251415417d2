// The learner IDE: file tree | editor over terminals, resizable; connection status; the
// "workshop ended" state once the seat is gone.

import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import { TopBar } from '../components/TopBar';
import { FileTree } from '../components/FileTree';
import { EditorArea } from '../components/EditorArea';
import { TerminalPanel, preconnectTerminal } from '../components/TerminalPanel';
import { LearnerBanner } from '../presenter/LearnerBanner';
import { useLearnerEvents } from '../workspace/learnerEvents';
import { Splitter } from '../components/Splitter';
import { ReadmePanel } from '../components/ReadmePanel';
import { api } from '../api/client';
import { loadLearner, saveLearner } from '../lib/storage';
import { navigate } from '../lib/router';
import { SeatSession } from '../workspace/seatSession';
import { FileWatcher } from '../workspace/fileWatcher';
import { parentOf, useFileTree } from '../workspace/useFileTree';
import { useEditors } from '../workspace/useEditors';
import type { ConnectionStatus } from '../terminal/connection';
import { HelpButton, useHelp } from '../components/HelpButton';
import { PreviewButtons, usePreviews } from '../components/Previews';
import { BroadcastNotice, PresenceBadge, usePresence } from '../components/ToolkitNotices';
import { MovedNotice } from '../components/MovedNotice';
import { loadSeen, parseHelpMark, saveSeen, shouldFile } from '../workspace/help';

export function Workspace() {
  const [seat] = useState(() => {
    const s = loadLearner();
    if (!s) return null;
    const seat = new SeatSession(s);
    // Before the IDE renders: the terminal's socket opens meanwhile (a no-op after the join
    // page opened it already).
    void preconnectTerminal(seat);
    seat.opened();
    return seat;
  });
  useEffect(() => {
    if (!seat) navigate('/', { replace: true });
  }, [seat]);
  if (!seat) return null;
  return <Ide seat={seat} />;
}

/** The template's README for this seat (from `GET /api/me`), open until the learner closes it. */
function useReadme(seat: SeatSession) {
  const [info, setInfo] = useState<{ text: string | null; template: string | null }>({ text: null, template: null });
  const [open, setOpen] = useState(true);
  useEffect(() => {
    const ctl = new AbortController();
    seat
      .call((token) => api.me(token, ctl.signal))
      .then((me) => setInfo({ text: me.readme ?? null, template: me.template ?? null }))
      .catch(() => {
        // No README is the normal case for a workshop without a template; a failed fetch only
        // hides the panel (the seat's own connection reports a lost session).
      });
    return () => ctl.abort();
  }, [seat]);
  return { ...info, open, setOpen };
}

function summarize(statuses: Map<string, ConnectionStatus>): { text: string; tone: 'ok' | 'warn' | 'bad' } {
  const all = [...statuses.values()];
  const reconnecting = all.find((s) => s.state === 'reconnecting');
  if (reconnecting && reconnecting.state === 'reconnecting') {
    return { text: `Connection lost; reconnecting (attempt ${reconnecting.attempt})…`, tone: 'bad' };
  }
  if (all.some((s) => s.state === 'connecting')) return { text: 'Connecting…', tone: 'warn' };
  if (all.length === 0) return { text: 'Connecting…', tone: 'warn' };
  return { text: 'Connected', tone: 'ok' };
}

function Ide({ seat }: { seat: SeatSession }) {
  const ended = useSyncExternalStore(
    (cb) => seat.subscribe(cb),
    () => seat.ended,
  );
  const tree = useFileTree(seat);
  const editors = useEditors(seat);
  const [sidebar, setSidebar] = useState(250);
  const [termHeight, setTermHeight] = useState(() => Math.round(window.innerHeight * 0.42));
  const [statuses, setStatuses] = useState<Map<string, ConnectionStatus>>(() => new Map());
  const [watchLive, setWatchLive] = useState(false);
  const s = seat.session;
  const readme = useReadme(seat);
  const activeFile = useRef<string | null>(null);
  activeFile.current = editors.active ?? null;
  const help = useHelp(
    seat,
    useCallback(() => activeFile.current, []),
  );
  const previews = usePreviews(useCallback((fn) => seat.call(fn), [seat]));
  const seen = useRef<Set<string> | null>(null);
  const onSeatMark = useCallback(
    (data: string) => {
      const mark = parseHelpMark(data);
      if (!mark) return;
      seen.current ??= loadSeen();
      if (!shouldFile(mark.id, seen.current, Date.now())) return;
      saveSeen(seen.current);
      void help.ask(mark.message.trim());
    },
    [help.ask],
  );

  const onStatus = useCallback((session: string, st: ConnectionStatus | null) => {
    setStatuses((prev) => {
      const next = new Map(prev);
      if (st) next.set(session, st);
      else next.delete(session);
      return next;
    });
  }, []);

  // Live file events.
  const { refresh, forget } = tree;
  const { externalChange } = editors;
  useEffect(() => {
    const w = new FileWatcher({
      url: () => seat.wsUrl('/api/session/files/watch'),
      probe: () => seat.probe(),
      onLive: setWatchLive,
      onOpen: () => refresh(),
      onEvents: (events) => {
        const paths = events.flatMap((e) => e.paths);
        forget(events.filter((e) => e.kind === 'deleted').flatMap((e) => e.paths));
        if (events.some((e) => e.paths.length === 0)) refresh();
        else refresh(new Set(paths.map(parentOf)));
        externalChange(events);
      },
    });
    w.connect();
    return () => w.close();
  }, [seat, refresh, forget, externalChange]);

  // Ctrl/Cmd-S anywhere saves the active file instead of opening the browser's save dialog.
  const { active, save } = editors;
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if ((e.ctrlKey || e.metaKey) && !e.altKey && e.key.toLowerCase() === 's') {
        e.preventDefault();
        if (active) void save(active);
      }
    };
    window.addEventListener('keydown', onKey, true);
    return () => window.removeEventListener('keydown', onKey, true);
  }, [active, save]);

  useEffect(() => {
    document.title = `${s.workshop_name} · ClaraTeach`;
  }, [s.workshop_name]);

  const summary = useMemo(() => summarize(statuses), [statuses]);
  const live = useLearnerEvents(seat);
  const presence = usePresence(seat);
  const dirtyCount = editors.tabs.filter((t) => t.state !== 'clean').length;

  return (
    <div className="ide">
      <TopBar
        right={
          <span className="row" style={{ gap: 10 }}>
          {readme.text && !readme.open && (
            <button type="button" className="btn small" onClick={() => readme.setOpen(true)} data-testid="open-readme">
              Instructions
            </button>
          )}
          <PreviewButtons
            token={() => seat.token}
            previews={previews.previews}
            onChange={(p) => previews.setPreviews((all) => all.map((x) => (x.port === p.port ? p : x)))}
          />
          <PresenceBadge presence={presence} />
          <HelpButton help={help} />
          <span className="small muted" title="Use it to get back to this seat from another browser">
            Reconnect code{' '}
            <span className="code-chip" data-testid="topbar-reconnect-code">
              {s.odehash}
            </span>
          </span>
          </span>
        }
      >
        <div className="meta">
          <strong>{s.workshop_name}</strong>
          <span>Seat {s.seat}</span>
          {s.name && <span>· {s.name}</span>}
        </div>
      </TopBar>
      <LearnerBanner announcements={live.announcements} />
      <div className="ide-body">
        <aside className="sidebar" style={{ width: sidebar }} aria-label="Explorer">
          <FileTree tree={tree} onOpen={(p, focus) => void editors.open(p, focus)} onRenamed={editors.renamed} onDeleted={editors.deleted} />
        </aside>
        <Splitter orientation="vertical" value={sidebar} min={160} max={520} onChange={setSidebar} label="Resize file explorer" />
        <div className="main-col">
          <EditorArea editors={editors} />
          <Splitter
            orientation="horizontal"
            value={termHeight}
            min={100}
            max={Math.max(160, window.innerHeight - 200)}
            onChange={setTermHeight}
            direction={-1}
            label="Resize terminal"
          />
          <div style={{ height: termHeight, display: 'flex', flex: 'none' }}>
            <TerminalPanel seat={seat} onStatus={onStatus} onSeatMark={onSeatMark} spotlight={live.spotlight} />
          </div>
        </div>
        {readme.text && readme.open && <ReadmePanel readme={readme.text} template={readme.template} onClose={() => readme.setOpen(false)} />}
      </div>
      <footer className="statusbar">
        <span className={`conn ${summary.tone}`} role="status" aria-live="polite" data-testid="connection-status">
          {summary.text}
        </span>
        <span>{watchLive ? 'Files live' : 'Files: waiting for live updates'}</span>
        <span className="spacer" />
        <span>{dirtyCount > 0 ? `${dirtyCount} unsaved` : 'All changes saved'}</span>
        {editors.active && <span className="mono">{editors.active}</span>}
      </footer>
      <BroadcastNotice seat={seat} />
      <MovedNotice seat={seat} />
      {ended && (
        <div className="overlay">
          <div className="card" role="alertdialog" aria-modal="true" aria-labelledby="ended-title" aria-describedby="ended-desc" data-testid="workshop-ended">
            <h2 id="ended-title">This workshop has ended</h2>
            <p id="ended-desc" style={{ margin: 0 }}>
              {ended} Your workspace is closed. Thanks for taking part!
            </p>
            <p className="small muted" style={{ margin: 0 }}>
              If your instructor restarts it, rejoin with code <strong className="mono">{s.code}</strong> and reconnect
              code <strong className="mono">{s.odehash}</strong>.
            </p>
            <div className="row">
              <button
                type="button"
                className="btn primary"
                autoFocus
                onClick={() => {
                  saveLearner(null);
                  navigate(`/?code=${encodeURIComponent(s.code)}`);
                }}
              >
                Back to the join page
              </button>
            </div>
          </div>
        </div>
      )}
    </div>
  );
}
