// One terminal WebSocket with automatic reconnect. Framework-free so the same class serves the
// learner's tabs and the instructor's shadow view; xterm is wired up in TerminalView.

import { Backoff } from '../lib/backoff';
import { decodeFrame, encodeInput, encodeResize, type ServerControl } from '../lib/termProtocol';
import type { Preopened } from './early';

export type ConnectionStatus =
  | { state: 'connecting' }
  | { state: 'open' }
  | { state: 'reconnecting'; inMs: number; attempt: number }
  | { state: 'exited'; code: number }
  | { state: 'ended'; reason: string };

export interface ConnectionHandlers {
  /** Raw PTY bytes. */
  onOutput(bytes: Uint8Array): void;
  /** A scrollback replay follows: clear the screen. */
  onReplay(): void;
  /** Every byte of the attach replay has been handed to `onOutput` (at once when it was empty). */
  onReplayed?(): void;
  onControl(msg: ServerControl): void;
  onStatus(status: ConnectionStatus): void;
}

export interface ConnectionOptions {
  /**
   * Builds the URL for each attempt: a fresh one-time ticket each time (tickets are single use
   * and valid 30 s), so it may be async. A rejected promise counts as a failed attempt.
   */
  url: () => string | Promise<string>;
  /**
   * Asked after a connection failed or dropped: `'ended'` stops reconnecting (token refused,
   * workshop stopped), `'retry'` backs off and tries again.
   */
  probe: () => Promise<'retry' | { ended: string }>;
  backoff?: Backoff;
  /**
   * A socket opened for this terminal before it existed (see early.ts), used by the first
   * attempt instead of `url`; `null` (or a promise of `null`) when there is none.
   */
  adopt?: () => Promise<Preopened | null> | null;
}

/** The most replay bytes handed over at once: one piece is parsed in one task. */
const REPLAY_PIECE = 256 * 1024;

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export class TerminalConnection {
  private ws: WebSocket | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  private size: { cols: number; rows: number } | null = null;
  private readonly backoff: Backoff;
  private status: ConnectionStatus = { state: 'connecting' };
  private attempt = 0;

  constructor(
    private readonly opts: ConnectionOptions,
    private readonly handlers: ConnectionHandlers,
  ) {
    this.backoff = opts.backoff ?? new Backoff();
  }

  get current(): ConnectionStatus {
    return this.status;
  }

  private setStatus(s: ConnectionStatus): void {
    this.status = s;
    this.handlers.onStatus(s);
  }

  connect(): void {
    if (this.closed) return;
    this.clearTimer();
    this.setStatus({ state: 'connecting' });
    const attempt = ++this.attempt;
    const early = attempt === 1 ? this.opts.adopt?.() : null;
    if (early) {
      early.then(
        (p) => {
          if (this.closed || attempt !== this.attempt) p?.ws.close(1000);
          else if (p) this.wire(p.ws, p);
          else this.connect();
        },
        () => {
          if (!this.closed && attempt === this.attempt) this.connect();
        },
      );
      return;
    }
    let url: string | Promise<string>;
    try {
      url = this.opts.url();
    } catch {
      void this.afterDrop();
      return;
    }
    if (typeof url === 'string') {
      this.open(url);
      return;
    }
    url.then(
      (u) => {
        if (!this.closed && attempt === this.attempt) this.open(u);
      },
      () => {
        if (!this.closed && attempt === this.attempt) void this.afterDrop();
      },
    );
  }

  private open(url: string): void {
    let ws: WebSocket;
    try {
      ws = new WebSocket(url);
    } catch {
      void this.afterDrop();
      return;
    }
    this.wire(ws);
  }

  /** Takes `ws` as this attempt's socket; `pre` says what it did before (adopted early). */
  private wire(ws: WebSocket, pre?: Preopened): void {
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    let attached = false;
    // Bytes of the attach replay still to come; the server says how many in `attached`.
    let replayLeft = -1;
    const replayed = () => {
      replayLeft = -1;
      this.handlers.onReplayed?.();
    };
    const onOpen = () => {
      if (this.size) ws.send(encodeResize(this.size.cols, this.size.rows));
    };
    // The replay is handed over in as few pieces as it allows (each piece is parsed, and may be
    // drawn, on its own: one write draws the screen once instead of once per frame).
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    const flush = () => {
      if (pending.length === 0) return;
      this.handlers.onOutput(pending.length === 1 ? pending[0] : concat(pending, pendingBytes));
      pending = [];
      pendingBytes = 0;
    };
    const receive = (data: ArrayBuffer | string) => {
      const f = decodeFrame(data);
      if (f.kind === 'output') {
        if (replayLeft <= 0) {
          this.handlers.onOutput(f.bytes);
          return;
        }
        pending.push(f.bytes);
        pendingBytes += f.bytes.length;
        replayLeft -= f.bytes.length;
        if (replayLeft <= 0 || pendingBytes >= REPLAY_PIECE) flush();
        if (replayLeft <= 0) replayed();
        return;
      }
      if (f.kind !== 'control') return;
      const msg = f.msg;
      if (msg.type === 'attached') {
        attached = true;
        this.backoff.reset();
        this.handlers.onReplay();
        this.setStatus({ state: 'open' });
        replayLeft = msg.replay_bytes ?? 0;
        if (replayLeft <= 0) replayed();
      } else if (msg.type === 'error' && msg.code === 'resync') {
        this.handlers.onReplay();
      } else if (msg.type === 'exit') {
        this.setStatus({ state: 'exited', code: msg.code });
      }
      this.handlers.onControl(msg);
    };
    const onClose = (ev: { code: number; reason: string }) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.closed) return;
      if (this.status.state === 'exited') return; // wait for the user to restart the shell
      if (!attached && ev.code === 1008) {
        this.setStatus({ state: 'ended', reason: ev.reason || 'Access refused.' });
        return;
      }
      void this.afterDrop();
    };
    ws.onopen = onOpen;
    ws.onmessage = (ev: MessageEvent<ArrayBuffer | string>) => receive(ev.data);
    ws.onclose = onClose;
    if (pre) {
      if (pre.opened) onOpen();
      for (const data of pre.frames.splice(0)) receive(data);
      if (pre.closed) onClose(pre.closed);
    }
  }

  private async afterDrop(): Promise<void> {
    if (this.closed) return;
    let verdict: 'retry' | { ended: string } = 'retry';
    try {
      verdict = await this.opts.probe();
    } catch {
      verdict = 'retry';
    }
    if (this.closed) return;
    if (verdict !== 'retry') {
      this.setStatus({ state: 'ended', reason: verdict.ended });
      return;
    }
    const attempt = this.backoff.attempts + 1;
    const inMs = this.backoff.next();
    this.setStatus({ state: 'reconnecting', inMs, attempt });
    this.timer = setTimeout(() => this.connect(), inMs);
  }

  /** Reconnects now (the "retry now" button, or restarting an exited shell). */
  reconnectNow(): void {
    if (this.closed) return;
    this.attempt++;
    const ws = this.ws;
    this.ws = null;
    ws?.close();
    this.backoff.reset();
    this.connect();
  }

  send(data: string): boolean {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(encodeInput(data));
    return true;
  }

  resize(cols: number, rows: number): void {
    if (this.size && this.size.cols === cols && this.size.rows === rows) return;
    this.size = { cols, rows };
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(encodeResize(cols, rows));
  }

  close(): void {
    this.closed = true;
    this.attempt++;
    this.clearTimer();
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000);
  }

  private clearTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }
}
