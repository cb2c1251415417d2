import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SeatSession } from './seatSession';

const session = { token: 'tok', odehash: 'ABC-123', code: 'CLAUDE-XY9Z', workshop_id: 'ws-a', workshop_name: 'W', seat: 1 };

describe('SeatSession: the rest of the IDE waits for the first terminal', () => {
  let asked: string[];
  beforeEach(() => {
    asked = [];
    vi.useFakeTimers();
    vi.stubGlobal('location', { href: 'http://127.0.0.1:8080/workspace' });
    vi.stubGlobal(
      'fetch',
      vi.fn(async (path: string) => {
        asked.push(path);
        const body = path === '/api/session/ticket' ? { ticket: `ctk_${asked.length}`, expires_in: 30 } : [];
        return new Response(JSON.stringify(body), { status: 200 });
      }),
    );
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  it("asks the terminal's ticket at once and everything else once the terminal is live", async () => {
    const seat = new SeatSession(session);
    seat.opened();
    const files = seat.call((t) => fetch(`/api/session/files?t=${t}`));
    const events = seat.wsUrl('/api/session/events');
    const terminal = await seat.wsUrl('/api/session/terminal', { session: 'main', mode: 'interactive' });
    expect(terminal).toBe('ws://127.0.0.1:8080/api/session/terminal?ticket=ctk_1&session=main&mode=interactive');
    await vi.advanceTimersByTimeAsync(100);
    expect(asked).toEqual(['/api/session/ticket']);
    seat.markLive();
    await files;
    expect(await events).toMatch(/^ws:\/\/127\.0\.0\.1:8080\/api\/session\/events\?ticket=ctk_/);
    expect(asked).toHaveLength(3);
    expect(asked).toContain('/api/session/files?t=tok');
  });

  it('lets the rest go on by itself when no terminal goes live', async () => {
    const seat = new SeatSession(session);
    seat.opened();
    const files = seat.call((t) => fetch(`/api/session/files?t=${t}`));
    await vi.advanceTimersByTimeAsync(1999);
    expect(asked).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    await files;
    expect(asked).toEqual(['/api/session/files?t=tok']);
  });
});
