// Live seat screens for the instructor's grid: one WebSocket for the whole workshop
// (GET /api/workshops/{id}/screens, a one-time ticket in the URL), a frame per seat whose screen
// changed, at most one per second each. Pure helpers (merge, facts, sort and filter) are
// exported for tests; everything in a frame comes from a learner's seat and is rendered as text.

import { useEffect, useState } from 'react';
import { api } from '../api/client';
import { Backoff } from '../lib/backoff';
import type { Seat } from '../api/types';

export interface CommandRecord {
  command: string;
  exit_code: number | null;
  finished_at: string;
}

export interface ScreenFrame {
  seat: number;
  session: string;
  version: number;
  rows: number;
  cols: number;
  lines: string[];
  cursor: { row: number; col: number; visible: boolean };
  cwd?: string | null;
  running?: string | null;
  commands?: CommandRecord[];
  idle_s: number;
  exited?: boolean;
  /** Client side: when the frame arrived (ms), so idle time keeps counting between frames. */
  received_at?: number;
}

export type Screens = ReadonlyMap<number, ScreenFrame>;

/** Seconds of idle at `now`, counting on from the frame's `idle_s`. */
export function idleSeconds(f: ScreenFrame, now: number): number {
  const since = f.received_at ?? now;
  return f.idle_s + Math.max(0, Math.floor((now - since) / 1000));
}

export function lastCommand(f: ScreenFrame | undefined): CommandRecord | undefined {
  const c = f?.commands;
  return c && c.length > 0 ? c[c.length - 1] : undefined;
}

/** The last finished command failed (non-zero exit). */
export function isFailing(f: ScreenFrame | undefined): boolean {
  const c = lastCommand(f);
  return !!c && c.exit_code !== null && c.exit_code !== 0;
}

/** Idle for this long counts as "idle" in the grid's filter. */
export const IDLE_AFTER_S = 120;

export function isIdle(f: ScreenFrame | undefined, now: number): boolean {
  return !!f && idleSeconds(f, now) >= IDLE_AFTER_S;
}

export function idleLabel(s: number): string {
  if (s < 60) return 'active';
  const m = Math.floor(s / 60);
  return m < 60 ? `idle ${m} min` : `idle ${Math.floor(m / 60)} h ${m % 60} min`;
}

export type GridFilter = 'all' | 'help' | 'failing' | 'idle';
export type GridSort = 'seat' | 'name' | 'help' | 'failing' | 'idle';

export interface GridContext {
  screens: Screens;
  /** Seats with an open help request, in queue order. */
  help: readonly number[];
  now: number;
}

function keyFor(sort: GridSort, s: Seat, ctx: GridContext): [number, string] {
  const f = ctx.screens.get(s.seat);
  switch (sort) {
    case 'name':
      return [s.name ? 0 : 1, (s.name ?? '').toLowerCase()];
    case 'help': {
      const i = ctx.help.indexOf(s.seat);
      return [i < 0 ? Number.MAX_SAFE_INTEGER : i, ''];
    }
    case 'failing':
      return [isFailing(f) ? 0 : 1, ''];
    case 'idle':
      return [f ? -idleSeconds(f, ctx.now) : 0, ''];
    default:
      return [0, ''];
  }
}

/** The seats to show, filtered then sorted (ties by seat number). */
export function arrangeSeats(seats: readonly Seat[], filter: GridFilter, sort: GridSort, ctx: GridContext): Seat[] {
  const shown = seats.filter((s) => {
    const f = ctx.screens.get(s.seat);
    switch (filter) {
      case 'help':
        return ctx.help.includes(s.seat);
      case 'failing':
        return isFailing(f);
      case 'idle':
        return s.joined && isIdle(f, ctx.now);
      default:
        return true;
    }
  });
  return shown
    .map((s) => ({ s, k: keyFor(sort, s, ctx) }))
    .sort((a, b) => a.k[0] - b.k[0] || a.k[1].localeCompare(b.k[1]) || a.s.seat - b.s.seat)
    .map((x) => x.s);
}

/** Parses one frame; anything malformed is dropped (it came from a seat). */
export function parseFrame(text: string, now: number): ScreenFrame | null {
  try {
    const v = JSON.parse(text) as ScreenFrame;
    if (typeof v.seat !== 'number' || !Array.isArray(v.lines)) return null;
    v.lines = v.lines.filter((l): l is string => typeof l === 'string');
    v.received_at = now;
    return v;
  } catch {
    return null;
  }
}

/** A new map with `frame` in it (a new object only for the seat that changed). */
export function mergeFrame(prev: Screens, frame: ScreenFrame): Screens {
  const next = new Map(prev);
  next.set(frame.seat, frame);
  return next;
}

/** How long frames are gathered before the grid renders them (one render for them all). */
export const SCREEN_BATCH_MS = 250;

/** Follows the workshop's screens stream while mounted; reconnects with backoff. */
export function useScreens(token: string, workshopId: string, enabled: boolean): Screens {
  const [screens, setScreens] = useState<Screens>(() => new Map());
  useEffect(() => {
    if (!enabled) return;
    let stopped = false;
    let ws: WebSocket | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const backoff = new Backoff();
    // Frames land in one render per SCREEN_BATCH_MS: each seat changes at most once a second,
    // so with 50 busy seats a 50 ms window still meant ~20 grid renders a second.
    let pending: ScreenFrame[] = [];
    let flush: ReturnType<typeof setTimeout> | undefined;
    const connect = async () => {
      try {
        const { ticket } = await api.sessionTicket(token, { workshop_id: workshopId, seat: 1, mode: 'watch' });
        if (stopped) return;
        const url = new URL(`/api/workshops/${encodeURIComponent(workshopId)}/screens`, location.href);
        url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
        url.searchParams.set('ticket', ticket);
        ws = new WebSocket(url);
        ws.onopen = () => backoff.reset();
        ws.onmessage = (e) => {
          if (typeof e.data !== 'string') return;
          const f = parseFrame(e.data, Date.now());
          if (!f) return;
          pending.push(f);
          flush ??= setTimeout(() => {
            flush = undefined;
            const batch = pending;
            pending = [];
            setScreens((prev) => batch.reduce(mergeFrame, prev));
          }, SCREEN_BATCH_MS);
        };
        ws.onclose = () => {
          ws = null;
          if (!stopped) timer = setTimeout(() => void connect(), backoff.next());
        };
      } catch {
        if (!stopped) timer = setTimeout(() => void connect(), backoff.next());
      }
    };
    void connect();
    return () => {
      stopped = true;
      clearTimeout(timer);
      clearTimeout(flush);
      ws?.close();
    };
  }, [token, workshopId, enabled]);
  return screens;
}
