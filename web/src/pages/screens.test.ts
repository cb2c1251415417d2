import { describe, expect, it } from 'vitest';
import type { Seat } from '../api/types';
import { arrangeSeats, idleLabel, idleSeconds, isFailing, mergeFrame, parseFrame, type ScreenFrame } from './screens';

function seat(n: number, name: string | null = null): Seat {
  return { seat: n, state: 'ready', joined: name !== null, name, agent_id: 'a', joined_at: null, last_activity_at: null } as Seat;
}

function frame(n: number, exit: number | null, idle = 0): ScreenFrame {
  return {
    seat: n, session: 'main', version: 1, rows: 24, cols: 80, lines: ['$'], cursor: { row: 0, col: 2, visible: true },
    commands: exit === undefined ? [] : [{ command: 'make', exit_code: exit, finished_at: '' }], idle_s: idle, received_at: 0,
  };
}

describe('screens', () => {
  const seats = [seat(1, 'zoe'), seat(2, 'adam'), seat(3, null), seat(4, 'bea')];
  const screens = new Map([
    [1, frame(1, 2, 30)],
    [2, frame(2, 0, 600)],
    [4, frame(4, 127, 5)],
  ]);
  const ctx = { screens, help: [4, 2], now: 0 };

  it('filters by failing, idle and help', () => {
    expect(arrangeSeats(seats, 'failing', 'seat', ctx).map((s) => s.seat)).toEqual([1, 4]);
    expect(arrangeSeats(seats, 'idle', 'seat', ctx).map((s) => s.seat)).toEqual([2]);
    expect(arrangeSeats(seats, 'help', 'seat', ctx).map((s) => s.seat)).toEqual([2, 4]);
    expect(arrangeSeats(seats, 'all', 'seat', ctx).map((s) => s.seat)).toEqual([1, 2, 3, 4]);
  });

  it('sorts by name, help queue order, failing first and most idle first', () => {
    expect(arrangeSeats(seats, 'all', 'name', ctx).map((s) => s.seat)).toEqual([2, 4, 1, 3]);
    expect(arrangeSeats(seats, 'all', 'help', ctx).map((s) => s.seat)).toEqual([4, 2, 1, 3]);
    expect(arrangeSeats(seats, 'all', 'failing', ctx).map((s) => s.seat)).toEqual([1, 4, 2, 3]);
    expect(arrangeSeats(seats, 'all', 'idle', ctx).map((s) => s.seat)).toEqual([2, 1, 4, 3]);
  });

  it('counts idle time on between frames and labels it', () => {
    expect(idleSeconds(frame(1, 0, 50), 70_000)).toBe(120);
    expect(idleLabel(30)).toBe('active');
    expect(idleLabel(180)).toBe('idle 3 min');
    expect(idleLabel(3900)).toBe('idle 1 h 5 min');
  });

  it('drops malformed frames and keeps lines as strings', () => {
    expect(parseFrame('not json', 1)).toBeNull();
    expect(parseFrame('{"lines":[]}', 1)).toBeNull();
    const f = parseFrame('{"seat":2,"lines":["<b>x</b>",3],"idle_s":0,"cursor":{"row":0,"col":0,"visible":true}}', 9);
    expect(f?.lines).toEqual(['<b>x</b>']);
    expect(f?.received_at).toBe(9);
    expect(isFailing(f ?? undefined)).toBe(false);
  });

  it('merges a frame without touching other seats', () => {
    const next = mergeFrame(screens, frame(2, 1));
    expect(next.get(1)).toBe(screens.get(1));
    expect(isFailing(next.get(2))).toBe(true);
  });
});
