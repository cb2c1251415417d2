// Terminal tabs: one named PTY session per tab (sessions outlive the page, so tabs are
// remembered), the takeover notice while the instructor types, and per-tab connection status.

import { useCallback, useState } from 'react';
import { TerminalView } from '../terminal/TerminalView';
import { openEarly, takeEarly } from '../terminal/early';
import type { ConnectionStatus } from '../terminal/connection';
import { isValidSessionName, type ServerControl } from '../lib/termProtocol';
import { loadTerminalTabs, saveTerminalTabs } from '../lib/storage';
import type { SeatSession } from '../workspace/seatSession';
import type { Spotlight } from '../api/types';
import { Icon } from './Icon';

export interface TerminalPanelProps {
  seat: SeatSession;
  onStatus: (session: string, s: ConnectionStatus | null) => void;
  /** The seat's `help` command marks, from any tab. */
  onSeatMark?: (data: string) => void;
  /** What the instructor shares with every learner: shown as a read-only "Presenter" tab. */
  spotlight?: Spotlight | null;
}

/** The Presenter tab's name; never a session name (those have no spaces). */
const PRESENTER = 'Presenter';

/** The terminal tabs of this seat's workshop, as last left in this browser. */
function savedTabs(workshopId: string): string[] {
  return loadTerminalTabs(workshopId).filter(isValidSessionName);
}

const terminalUrl = (seat: SeatSession, session: string) =>
  seat.wsUrl('/api/session/terminal', { session, mode: 'interactive' });

const earlyKey = (seat: SeatSession, session: string) => `${seat.session.workshop_id}/${seat.session.seat}/${session}`;

/**
 * Opens the socket of the terminal tab the IDE will show first, before the IDE renders (the
 * join page calls it as soon as the join answers): the tab's connection adopts it. Resolves
 * when the socket is made, so the caller can render the IDE while it connects.
 */
export function preconnectTerminal(seat: SeatSession): Promise<void> {
  const first = savedTabs(seat.session.workshop_id)[0] ?? 'main';
  return openEarly(earlyKey(seat, first), () => terminalUrl(seat, first));
}

export function TerminalPanel({ seat, onStatus, onSeatMark, spotlight }: TerminalPanelProps) {
  const wsId = seat.session.workshop_id;
  const [tabs, setTabs] = useState<string[]>(() => savedTabs(wsId));
  const [active, setActive] = useState(tabs[0] ?? 'main');
  const [takeover, setTakeover] = useState<Set<string>>(() => new Set());
  const [notice, setNotice] = useState<string | null>(null);
  const [seen, setSeen] = useState<string | null>(null);
  // A new spotlight brings its tab forward once; the learner may switch back.
  const spotKey = spotlight ? `${spotlight.seat}:${spotlight.session}:${spotlight.since}` : null;
  if (spotKey !== seen) {
    setSeen(spotKey);
    if (spotKey) setActive(PRESENTER);
    else if (active === PRESENTER) setActive(tabs[0] ?? 'main');
  }

  const update = (next: string[]) => {
    setTabs(next);
    saveTerminalTabs(wsId, next);
  };

  const add = () => {
    let n = tabs.length + 1;
    while (tabs.includes(`term-${n}`)) n++;
    const name = `term-${n}`;
    update([...tabs, name]);
    setActive(name);
  };

  const close = (name: string) => {
    if (tabs.length === 1) return;
    const idx = tabs.indexOf(name);
    const next = tabs.filter((t) => t !== name);
    update(next);
    onStatus(name, null);
    if (active === name) setActive(next[Math.max(0, idx - 1)]);
  };

  const onControl = useCallback((session: string, m: ServerControl) => {
    if (m.type === 'takeover') {
      setTakeover((prev) => {
        const next = new Set(prev);
        if (m.active) next.add(session);
        else next.delete(session);
        return next;
      });
    } else if (m.type === 'notice') {
      setNotice(m.message);
    }
  }, []);

  return (
    <section className="terminal-area" aria-label="Terminals" style={{ flex: 1 }}>
      <div className="tabbar" role="tablist" aria-label="Terminal sessions">
        {tabs.map((name, i) => (
          <div
            key={name}
            role="tab"
            aria-selected={name === active}
            tabIndex={name === active ? 0 : -1}
            onClick={() => setActive(name)}
            onKeyDown={(e) => {
              if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
                const next = tabs[(i + (e.key === 'ArrowRight' ? 1 : tabs.length - 1)) % tabs.length];
                setActive(next);
                (e.currentTarget.parentElement?.children[tabs.indexOf(next)] as HTMLElement | undefined)?.focus();
                e.preventDefault();
              }
            }}
          >
            <Icon name="terminal" size={14} />
            <span>{name}</span>
            {takeover.has(name) && <span className="badge warn plain">instructor</span>}
            {tabs.length > 1 && (
              <button
                type="button"
                className="tab-close"
                tabIndex={-1}
                aria-label={`Close terminal ${name}`}
                onClick={(e) => {
                  e.stopPropagation();
                  close(name);
                }}
              >
                ×
              </button>
            )}
          </div>
        ))}
        {spotlight && (
          <div
            role="tab"
            aria-selected={active === PRESENTER}
            tabIndex={active === PRESENTER ? 0 : -1}
            data-testid="presenter-tab"
            onClick={() => setActive(PRESENTER)}
            title={`Your instructor is sharing seat ${spotlight.seat}'s terminal (read-only)`}
          >
            <Icon name="terminal" size={14} />
            <span>{PRESENTER}</span>
            <span className="badge ok plain">live</span>
          </div>
        )}
        <button type="button" className="add" onClick={add} aria-label="New terminal" title="New terminal">
          +
        </button>
      </div>
      {takeover.size > 0 && (
        <div className="takeover-banner" role="status" aria-live="assertive" data-testid="takeover-banner">
          <Icon name="alert" />
          Your instructor is typing in your terminal
          {takeover.size === 1 && tabs.length > 1 ? ` (${[...takeover][0]})` : ''}.
        </div>
      )}
      {notice && (
        <div className="alert info small" role="status" style={{ borderRadius: 0 }}>
          {notice}{' '}
          <button type="button" className="btn ghost small" onClick={() => setNotice(null)}>
            Dismiss
          </button>
        </div>
      )}
      <div className="terminal-stack">
        {spotlight && (
          <div className="terminal-pane" hidden={active !== PRESENTER} role="tabpanel" aria-label="Presenter terminal">
            <TerminalView
              key={spotKey}
              connectionKey={spotKey ?? undefined}
              label="Presenter terminal"
              url={() => seat.wsUrl('/api/session/spotlight')}
              probe={() => seat.probe()}
              interactive={false}
              sendResize={false}
              visible={active === PRESENTER}
              onStatus={() => undefined}
            />
          </div>
        )}
        {tabs.map((name) => (
          <div key={name} className="terminal-pane" hidden={name !== active} role="tabpanel" aria-label={`Terminal ${name}`}>
            <TerminalView
              label={`Terminal ${name}`}
              url={() => terminalUrl(seat, name)}
              adopt={() => takeEarly(earlyKey(seat, name))}
              onLive={() => seat.markLive()}
              probe={() => seat.probe()}
              interactive
              sendResize
              visible={name === active}
              onStatus={(s) => onStatus(name, s)}
              onControl={(m) => onControl(name, m)}
              onSeatMark={onSeatMark}
            />
          </div>
        ))}
      </div>
    </section>
  );
}
