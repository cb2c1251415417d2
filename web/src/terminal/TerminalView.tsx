// xterm.js bound to a TerminalConnection: fit addon, WebGL renderer with a canvas fallback (and
// DOM as the last resort), theme following the page, and keyboard input only when allowed.
// Links in the output open only after a confirmation that shows the URL (see links.ts).

import { useEffect, useRef, useState } from 'react';
import { Terminal, type ITheme } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { WebglAddon } from '@xterm/addon-webgl';
import { CanvasAddon } from '@xterm/addon-canvas';
import { WebLinksAddon } from '@xterm/addon-web-links';
import '@xterm/xterm/css/xterm.css';
import { TerminalConnection, type ConnectionStatus } from './connection';
import type { Preopened } from './early';
import type { ServerControl } from '../lib/termProtocol';
import { useTheme, type Theme } from '../lib/theme';
import { ConfirmDialog } from '../components/ConfirmDialog';
import { openConfirmedLink, safeLinkTarget } from './links';

const THEMES: Record<Theme, ITheme> = {
  dark: {
    background: '#0f1117', foreground: '#e6e6e6', cursor: '#a5b4fc', cursorAccent: '#0f1117',
    selectionBackground: '#3b4261',
    black: '#1b1e28', red: '#f7768e', green: '#9ece6a', yellow: '#e0af68', blue: '#7aa2f7',
    magenta: '#bb9af7', cyan: '#7dcfff', white: '#c0caf5', brightBlack: '#565f89', brightRed: '#ff8ea3',
    brightGreen: '#b9f27c', brightYellow: '#ffc777', brightBlue: '#8db0ff', brightMagenta: '#c7a9ff',
    brightCyan: '#a4daff', brightWhite: '#ffffff',
  },
  light: {
    background: '#fbfbfd', foreground: '#1f2330', cursor: '#4f46e5', cursorAccent: '#fbfbfd',
    selectionBackground: '#c7d2fe',
    black: '#1f2330', red: '#c4314b', green: '#2f7d32', yellow: '#8a6a00', blue: '#2e5fd8',
    magenta: '#8e44ad', cyan: '#0f7b8a', white: '#6b7280', brightBlack: '#4b5563', brightRed: '#e0445f',
    brightGreen: '#3a9a3e', brightYellow: '#a67f00', brightBlue: '#3b6fe8', brightMagenta: '#a15bc4',
    brightCyan: '#148e9f', brightWhite: '#111827',
  },
};

let markedInteractive = false;
let markedReplayed = false;

/**
 * Plain text of every mounted terminal by label. The WebGL/canvas renderers draw pixels, so this
 * is how the end-to-end tests read what a terminal shows. Exposed on `window` only in the e2e
 * build (`npm run build:e2e`); the production bundle has neither the globals nor their names.
 */
const terminalTexts = new Map<string, () => string>();

/** Grid geometry of every mounted terminal by label, so the end-to-end tests can point at a cell. */
const terminalGrids = new Map<string, () => { cols: number; rows: number; viewportY: number }>();

/**
 * Keyboard input into every mounted terminal by label (xterm's own input path, as a keystroke
 * takes), so the reconnect bench types the moment the scrollback is on screen: it listens for
 * the `clara:terminal-replayed` event (test-hook build only, like the maps above).
 */
const terminalInputs = new Map<string, (data: string) => void>();

if (__CLARA_TEST_HOOKS__) {
  const w = window as unknown as Record<string, unknown>;
  w.__claraTerminals = terminalTexts;
  w.__claraTerminalGrids = terminalGrids;
  w.__claraTerminalInputs = terminalInputs;
}

function bufferText(t: Terminal): string {
  const b = t.buffer.active;
  const lines: string[] = [];
  for (let i = 0; i < b.length; i++) lines.push(b.getLine(i)?.translateToString(true) ?? '');
  return lines.join('\n');
}

export interface TerminalViewProps {
  /** Builds the WebSocket URL for each attempt (with a fresh one-time ticket). */
  url: () => string | Promise<string>;
  probe: () => Promise<'retry' | { ended: string }>;
  /** Whether keystrokes go to the shell (false: instructor watching). */
  interactive: boolean;
  /** Whether the PTY follows this view's size (the learner's own view only). */
  sendResize: boolean;
  /** Whether the tab is shown (hidden tabs stay connected but are not fitted). */
  visible: boolean;
  label: string;
  onStatus?: (s: ConnectionStatus) => void;
  onControl?: (m: ServerControl) => void;
  /** Changes to this value tear down and rebuild the connection (e.g. watch -> takeover). */
  connectionKey?: string;
  /** Called with the payload of each OSC 7700 mark (the seat's `help` command). */
  onSeatMark?: (data: string) => void;
  /** A socket opened for this terminal before it mounted (see early.ts), for the first attempt. */
  adopt?: () => Promise<Preopened | null> | null;
  /** Called once after the first attach's scrollback is on screen and the terminal was then
   *  quiet for a moment (at most `SETTLE_LATEST_MS` later): background work may start. */
  onLive?: () => void;
}

export function TerminalView(props: TerminalViewProps) {
  const host = useRef<HTMLDivElement>(null);
  const term = useRef<Terminal | null>(null);
  const fit = useRef<FitAddon | null>(null);
  const latest = useRef(props);
  latest.current = props;
  const theme = useTheme();
  const [pendingLink, setPendingLink] = useState<string | null>(null);

  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const t = new Terminal({
      cursorBlink: true,
      fontFamily: '"JetBrains Mono", "Fira Code", ui-monospace, SFMono-Regular, Menlo, Consolas, monospace',
      fontSize: 14,
      scrollback: 5000,
      allowProposedApi: false,
      theme: THEMES[document.documentElement.dataset.theme === 'dark' ? 'dark' : 'light'],
      disableStdin: !latest.current.interactive,
      screenReaderMode: false,
    });
    const f = new FitAddon();
    t.loadAddon(f);
    t.loadAddon(
      new WebLinksAddon((event, uri) => {
        event.preventDefault();
        const target = safeLinkTarget(uri);
        if (target) setPendingLink(target);
      }),
    );
    t.open(el);
    t.parser.registerOscHandler(7700, (data) => {
      latest.current.onSeatMark?.(data);
      return true;
    });
    t.textarea?.setAttribute('aria-label', latest.current.label);
    // xterm's DOM renderer draws the first screen (no glyph atlas to build, no GL context to
    // make: on a software-GL browser the WebGL one made the first frames ~200 ms slower). Once
    // the terminal is live and then quiet (no keystroke, no output for SETTLE_QUIET_MS, or
    // SETTLE_LATEST_MS after it went live), the WebGL renderer takes over and `onLive` lets
    // the rest of the IDE load: neither lands between the learner's first keystrokes and their
    // echo. The reconnect bench can ask for the renderer at mount ('mount') or for none ('dom').
    const order = __CLARA_TEST_HOOKS__ ? localStorage.getItem('clarateach.test.renderer') : null;
    let upgraded = order === 'dom';
    let settled = false;
    let quiet: ReturnType<typeof setTimeout> | undefined;
    let latestAt = 0;
    const settleLater = () => {
      if (settled) return;
      clearTimeout(quiet);
      const now = performance.now();
      latestAt ||= now + SETTLE_LATEST_MS;
      quiet = setTimeout(
        () =>
          whenIdle(() => {
            if (settled || term.current !== t) return;
            settled = true;
            latest.current.onLive?.();
            if (!upgraded) {
              upgraded = true;
              loadRenderer(t);
            }
          }),
        Math.max(0, Math.min(SETTLE_QUIET_MS, latestAt - now)),
      );
    };
    if (order === 'mount') {
      upgraded = true;
      loadRenderer(t);
    }
    term.current = t;
    fit.current = f;
    const label = latest.current.label;
    terminalTexts.set(label, () => bufferText(t));
    terminalGrids.set(label, () => ({ cols: t.cols, rows: t.rows, viewportY: t.buffer.active.viewportY }));
    if (__CLARA_TEST_HOOKS__) terminalInputs.set(label, (data) => t.input(data, true));

    let exited = false;
    const conn = new TerminalConnection(
      { url: () => latest.current.url(), probe: () => latest.current.probe(), adopt: () => latest.current.adopt?.() ?? null },
      {
        onOutput: (bytes) => {
          t.write(bytes);
          if (latestAt) settleLater();
        },
        onReplay: () => t.reset(),
        onReplayed: () => {
          // The load figure ends when the scrollback is on screen, not when the socket opened:
          // an empty write's callback runs once xterm has parsed everything written before it.
          if (!markedReplayed) {
            markedReplayed = true;
            t.write('', () => performance.mark('terminal-replayed'));
          }
          t.write('', () => {
            settleLater();
            if (__CLARA_TEST_HOOKS__) window.dispatchEvent(new CustomEvent('clara:terminal-replayed', { detail: label }));
          });
        },
        onControl: (m) => {
          if (m.type === 'exit') {
            exited = true;
            t.write(`\r\n\x1b[2m[shell exited with code ${m.code}; press any key for a new one]\x1b[0m\r\n`);
          }
          latest.current.onControl?.(m);
        },
        onStatus: (s) => {
          if (s.state === 'open') {
            exited = false;
            if (!markedInteractive) {
              markedInteractive = true;
              performance.mark('terminal-interactive');
            }
          }
          latest.current.onStatus?.(s);
        },
      },
    );
    const dataSub = t.onData((d) => {
      if (latestAt) settleLater();
      if (!latest.current.interactive) return;
      if (exited) {
        exited = false;
        conn.reconnectNow();
        return;
      }
      conn.send(d);
    });
    const resizeSub = t.onResize(({ cols, rows }) => {
      if (latest.current.sendResize) conn.resize(cols, rows);
    });
    const doFit = () => {
      if (!latest.current.visible || el.clientWidth === 0 || el.clientHeight === 0) return;
      try {
        f.fit();
      } catch {
        // Not laid out yet.
      }
    };
    doFit();
    if (latest.current.sendResize) conn.resize(t.cols, t.rows);
    conn.connect();
    let raf = 0;
    const ro = new ResizeObserver(() => {
      cancelAnimationFrame(raf);
      raf = requestAnimationFrame(doFit);
    });
    ro.observe(el);
    return () => {
      clearTimeout(quiet);
      cancelAnimationFrame(raf);
      ro.disconnect();
      dataSub.dispose();
      resizeSub.dispose();
      conn.close();
      terminalTexts.delete(label);
      terminalGrids.delete(label);
      terminalInputs.delete(label);
      t.dispose();
      term.current = null;
      fit.current = null;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [props.connectionKey]);

  useEffect(() => {
    if (term.current) term.current.options.theme = THEMES[theme];
  }, [theme]);

  useEffect(() => {
    if (term.current) term.current.options.disableStdin = !props.interactive;
  }, [props.interactive]);

  useEffect(() => {
    if (!props.visible) return;
    const id = requestAnimationFrame(() => {
      try {
        fit.current?.fit();
      } catch {
        // ignore
      }
      term.current?.focus();
    });
    return () => cancelAnimationFrame(id);
  }, [props.visible]);

  return (
    <>
      <div className="terminal-host" ref={host} data-terminal={props.label} />
      <ConfirmDialog
        open={pendingLink !== null}
        title="Open this link?"
        confirmLabel="Open in new tab"
        onConfirm={() => {
          if (pendingLink) openConfirmedLink(pendingLink);
          setPendingLink(null);
          term.current?.focus();
        }}
        onCancel={() => {
          setPendingLink(null);
          term.current?.focus();
        }}
      >
        <p>The terminal output links to:</p>
        <p>
          <code className="link-target" data-testid="terminal-link-target">
            {pendingLink}
          </code>
        </p>
        <p>Only open it if you trust where it leads.</p>
      </ConfirmDialog>
    </>
  );
}

/** How long a live terminal must be quiet before the WebGL renderer and the rest of the IDE. */
const SETTLE_QUIET_MS = 300;
/** The latest they come after the terminal went live, quiet or not. */
const SETTLE_LATEST_MS = 1500;

/** Runs `fn` when the page is next idle (at most a second later). */
function whenIdle(fn: () => void): void {
  if (typeof requestIdleCallback === 'function') requestIdleCallback(fn, { timeout: 1000 });
  else setTimeout(fn, 50);
}

/** WebGL when the browser gives us a context, else the canvas renderer, else xterm's DOM one. */
function loadRenderer(t: Terminal): void {
  const canvas = () => {
    try {
      t.loadAddon(new CanvasAddon());
    } catch {
      // DOM renderer stays.
    }
  };
  if (!hasWebgl2()) {
    canvas();
    return;
  }
  try {
    const webgl = new WebglAddon();
    webgl.onContextLoss(() => {
      webgl.dispose();
      canvas();
    });
    t.loadAddon(webgl);
  } catch {
    canvas();
  }
}

let webgl2: boolean | null = null;
function hasWebgl2(): boolean {
  if (webgl2 === null) {
    try {
      webgl2 = !!document.createElement('canvas').getContext('webgl2');
    } catch {
      webgl2 = false;
    }
  }
  return webgl2;
}
