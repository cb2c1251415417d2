// Live file-change events from `GET /api/session/files/watch` (WebSocket), with the same
// probe-and-backoff reconnect as the terminals. Event shapes are read leniently: any path-like
// field names a changed path; an event without one means "refresh everything".

import { Backoff } from '../lib/backoff';
import type { ProbeVerdict } from './seatSession';

export interface ChangeEvent {
  /** Paths the event names (created, modified, removed, renamed from/to). Empty: unknown. */
  paths: string[];
  kind: string;
}

export function parseWatchEvent(raw: string): ChangeEvent[] {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return [];
  }
  const list = Array.isArray(v) ? v : isObj(v) && Array.isArray(v.events) ? v.events : [v];
  const out: ChangeEvent[] = [];
  for (const e of list) {
    if (!isObj(e)) continue;
    const paths: string[] = [];
    for (const key of ['path', 'from', 'to', 'old_path', 'new_path']) {
      const p = e[key];
      if (typeof p === 'string' && p) paths.push(p.startsWith('/') ? p : `/${p}`);
    }
    if (Array.isArray(e.paths)) {
      for (const p of e.paths) if (typeof p === 'string' && p) paths.push(p.startsWith('/') ? p : `/${p}`);
    }
    const kind = typeof e.kind === 'string' ? e.kind : typeof e.type === 'string' ? e.type : 'change';
    out.push({ paths, kind });
  }
  return out;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export interface WatcherOptions {
  /** A fresh URL per attempt (with a one-time ticket, so possibly async). */
  url: () => string | Promise<string>;
  probe: () => Promise<ProbeVerdict>;
  onEvents: (events: ChangeEvent[]) => void;
  /** Connected (again): events may have been missed, so refresh. */
  onOpen: () => void;
  onLive: (live: boolean) => void;
}

export class FileWatcher {
  private ws: WebSocket | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  private readonly backoff = new Backoff({ baseMs: 1000, maxMs: 20000 });

  constructor(private readonly opts: WatcherOptions) {}

  connect(): void {
    if (this.closed) return;
    let url: string | Promise<string>;
    try {
      url = this.opts.url();
    } catch {
      this.retryLater();
      return;
    }
    if (typeof url === 'string') this.open(url);
    else
      url.then(
        (u) => {
          if (!this.closed) this.open(u);
        },
        () => this.retryLater(),
      );
  }

  /** The URL could not be built (ticket refused or unreachable): ask the probe, maybe retry. */
  private retryLater(): void {
    if (this.closed) return;
    this.opts.onLive(false);
    void this.opts.probe().then((v) => {
      if (this.closed || v !== 'retry') return;
      this.timer = setTimeout(() => this.connect(), this.backoff.next());
    });
  }

  private open(url: string): void {
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.backoff.reset();
      this.opts.onLive(true);
      this.opts.onOpen();
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (typeof ev.data === 'string') this.opts.onEvents(parseWatchEvent(ev.data));
    };
    ws.onclose = () => {
      if (this.ws !== ws || this.closed) return;
      this.ws = null;
      this.opts.onLive(false);
      void this.opts.probe().then((v) => {
        if (this.closed || v !== 'retry') return;
        this.timer = setTimeout(() => this.connect(), this.backoff.next());
      });
    };
  }

  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000);
  }
}
