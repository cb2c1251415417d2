// The learner's hold on their seat: the current token, a shared "is the session still valid?"
// probe used by every connection after a drop, silent token renewal with the reconnect code, and
// the "workshop ended" verdict once the seat is really gone.

import { ApiError, api } from '../api/client';
import { saveLearner, type LearnerSession } from '../lib/storage';

export type ProbeVerdict = 'retry' | { ended: string };

const ENDED_MESSAGE = 'Your instructor has stopped this workshop.';

/** The longest the rest of the IDE waits for the first terminal (see `markLive`). */
const LIVE_WAIT_MS = 2000;

/** The terminal socket: its ticket never waits for the terminal to be live. */
const TERMINAL_PATH = '/api/session/terminal';

export class SeatSession {
  private listeners = new Set<() => void>();
  private probing: Promise<ProbeVerdict> | null = null;
  private endedReason: string | null = null;
  private liveNow: () => void = () => undefined;
  /**
   * Resolves when the first terminal is live (its scrollback on screen, then a moment without
   * keystrokes: TerminalView's `onLive`), or `LIVE_WAIT_MS` after the IDE opened: every call
   * but the terminal's waits for it (issue 12: click -> live terminal), so the file tree, the
   * README, previews, help and the event streams neither queue in front of the terminal's
   * ticket nor keep the page and the server busy while its replay renders and its first
   * keystrokes echo.
   */
  private readonly live = new Promise<void>((resolve) => {
    this.liveNow = resolve;
  });
  private liveTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(public session: LearnerSession) {}

  /** Starts the clock of the wait for a live terminal (the IDE calls it when it opens). */
  opened(): void {
    this.liveTimer ??= setTimeout(() => this.markLive(), LIVE_WAIT_MS);
  }

  /** The first terminal is live: the rest of the IDE goes on. */
  markLive(): void {
    if (this.liveTimer !== null) clearTimeout(this.liveTimer);
    this.liveNow();
  }

  get token(): string {
    return this.session.token;
  }

  get ended(): string | null {
    return this.endedReason;
  }

  subscribe(cb: () => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  private emit(): void {
    this.listeners.forEach((l) => l());
  }

  markEnded(reason: string = ENDED_MESSAGE): void {
    if (this.endedReason !== null) return;
    this.endedReason = reason;
    this.emit();
  }

  /** One probe at a time, however many connections dropped together. */
  probe(): Promise<ProbeVerdict> {
    if (this.endedReason !== null) return Promise.resolve({ ended: this.endedReason });
    if (!this.probing) {
      this.probing = this.runProbe().finally(() => {
        this.probing = null;
      });
    }
    return this.probing;
  }

  private async runProbe(): Promise<ProbeVerdict> {
    try {
      await api.listFiles(this.token, '/');
      return 'retry';
    } catch (err) {
      if (!(err instanceof ApiError) || !err.isUnauthorized) return 'retry';
    }
    // The token was refused: renew it with the reconnect code, or learn that the workshop is over.
    try {
      const res = await api.join({ code: this.session.code, odehash: this.session.odehash });
      this.session = { ...this.session, token: res.token, seat: res.seat, workshop_name: res.workshop_name };
      saveLearner(this.session);
      return 'retry';
    } catch (err) {
      if (err instanceof ApiError && [401, 404, 409].includes(err.status) && err.code !== 'workshop_full') {
        this.markEnded();
        return { ended: ENDED_MESSAGE };
      }
      return 'retry';
    }
  }

  /**
   * Runs an API call with the current token, once the first terminal is live; on 401 renews
   * the token once or ends the session.
   */
  async call<T>(fn: (token: string) => Promise<T>): Promise<T> {
    await this.live;
    return this.callNow(fn);
  }

  private async callNow<T>(fn: (token: string) => Promise<T>): Promise<T> {
    try {
      return await fn(this.token);
    } catch (err) {
      if (!(err instanceof ApiError) || !err.isUnauthorized) throw err;
      const verdict = await this.probe();
      if (verdict !== 'retry') throw err;
      return fn(this.token);
    }
  }

  /**
   * WebSocket URL on this origin with a fresh one-time ticket (the token itself never goes in a
   * URL). The ticket is bound to `params.mode`; a refused token is renewed once as in `call`.
   */
  async wsUrl(path: string, params: Record<string, string> = {}): Promise<string> {
    const ticketed = (token: string) => api.sessionTicket(token, { mode: params.mode });
    const { ticket } = await (path === TERMINAL_PATH ? this.callNow(ticketed) : this.call(ticketed));
    const url = new URL(path, location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('ticket', ticket);
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    return url.toString();
  }
}
