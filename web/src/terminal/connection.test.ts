import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Backoff } from '../lib/backoff';
import { TerminalConnection, type ConnectionStatus } from './connection';
import { openEarly, takeEarly } from './early';

/** A WebSocket double: records sends, lets the test open, message and close it. */
class FakeSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 3;
  static all: FakeSocket[] = [];
  readyState = FakeSocket.CONNECTING;
  binaryType = 'blob';
  sent: string[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  send(d: string) {
    this.sent.push(d);
  }
  close() {
    this.drop(1000);
  }
  open() {
    this.readyState = FakeSocket.OPEN;
    this.onopen?.();
  }
  message(data: unknown) {
    this.onmessage?.({ data });
  }
  drop(code = 1006, reason = '') {
    if (this.readyState === FakeSocket.CLOSED) return;
    this.readyState = FakeSocket.CLOSED;
    this.onclose?.({ code, reason });
  }
}

function setup(probe: () => Promise<'retry' | { ended: string }> = async () => 'retry') {
  const out: Uint8Array[] = [];
  const statuses: ConnectionStatus[] = [];
  let replays = 0;
  let n = 0;
  const conn = new TerminalConnection(
    { url: () => `ws://x/t?n=${n++}`, probe, backoff: new Backoff({ baseMs: 100, maxMs: 400, random: () => 0.999999 }) },
    {
      onOutput: (b) => out.push(b),
      onReplay: () => replays++,
      onControl: () => {},
      onStatus: (s) => statuses.push(s),
    },
  );
  return { conn, out, statuses, replays: () => replays };
}

describe('TerminalConnection replay', () => {
  beforeEach(() => {
    FakeSocket.all = [];
    vi.stubGlobal('WebSocket', FakeSocket);
  });
  afterEach(() => vi.unstubAllGlobals());

  it('says when the attach replay has been handed over, by the byte count the server announced', () => {
    let replayed = 0;
    const conn = new TerminalConnection(
      { url: () => 'ws://x/t', probe: async () => 'retry' },
      { onOutput: () => {}, onReplay: () => {}, onReplayed: () => replayed++, onControl: () => {}, onStatus: () => {} },
    );
    conn.connect();
    const ws = FakeSocket.all[0];
    ws.open();
    ws.message('{"type":"attached","session":"main","new":false,"mode":"interactive","replay_bytes":5}');
    expect(replayed).toBe(0);
    ws.message(new Uint8Array([1, 2, 3]).buffer);
    expect(replayed).toBe(0);
    ws.message(new Uint8Array([4, 5]).buffer);
    expect(replayed).toBe(1);
    ws.message(new Uint8Array([6]).buffer); // live output: no second signal
    expect(replayed).toBe(1);
  });

  it('hands the replay to xterm in one piece (drawn once), live output as it comes', () => {
    const out: number[][] = [];
    const conn = new TerminalConnection(
      { url: () => 'ws://x/t', probe: async () => 'retry' },
      { onOutput: (b) => out.push(Array.from(b)), onReplay: () => {}, onControl: () => {}, onStatus: () => {} },
    );
    conn.connect();
    const ws = FakeSocket.all[0];
    ws.open();
    ws.message('{"type":"attached","session":"main","new":false,"mode":"interactive","replay_bytes":5}');
    ws.message(new Uint8Array([1, 2, 3]).buffer);
    expect(out).toEqual([]);
    ws.message(new Uint8Array([4, 5]).buffer);
    ws.message(new Uint8Array([6]).buffer);
    ws.message(new Uint8Array([7]).buffer);
    expect(out).toEqual([[1, 2, 3, 4, 5], [6], [7]]);
    conn.close();
  });

  it('says so at once when there is nothing to replay (or an older server does not say)', () => {
    let replayed = 0;
    const conn = new TerminalConnection(
      { url: () => 'ws://x/t', probe: async () => 'retry' },
      { onOutput: () => {}, onReplay: () => {}, onReplayed: () => replayed++, onControl: () => {}, onStatus: () => {} },
    );
    conn.connect();
    FakeSocket.all[0].open();
    FakeSocket.all[0].message('{"type":"attached","session":"main","new":true,"mode":"interactive"}');
    expect(replayed).toBe(1);
  });
});

describe('TerminalConnection', () => {
  beforeEach(() => {
    FakeSocket.all = [];
    vi.stubGlobal('WebSocket', FakeSocket);
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  it('sends the size on open, clears on attach, passes output and input', () => {
    const { conn, out, statuses, replays } = setup();
    conn.resize(100, 30);
    conn.connect();
    const ws = FakeSocket.all[0];
    expect(conn.send('x')).toBe(false);
    ws.open();
    expect(JSON.parse(ws.sent[0])).toEqual({ type: 'resize', cols: 100, rows: 30 });
    ws.message('{"type":"attached","session":"main","new":false,"mode":"interactive"}');
    expect(replays()).toBe(1);
    expect(statuses.at(-1)).toEqual({ state: 'open' });
    ws.message(new Uint8Array([104, 105]).buffer);
    expect(Array.from(out[0])).toEqual([104, 105]);
    expect(conn.send('ls\r')).toBe(true);
    expect(JSON.parse(ws.sent.at(-1)!)).toEqual({ type: 'input', data: 'ls\r' });
    ws.message('{"type":"error","code":"resync","message":"behind"}');
    expect(replays()).toBe(2);
  });

  it('reconnects with growing backoff after drops and resets after attach', async () => {
    const probe = vi.fn(async () => 'retry' as const);
    const { conn, statuses } = setup(probe);
    conn.connect();
    FakeSocket.all[0].drop();
    await vi.advanceTimersByTimeAsync(0);
    expect(probe).toHaveBeenCalledTimes(1);
    expect(statuses.at(-1)).toEqual({ state: 'reconnecting', inMs: 100, attempt: 1 });
    await vi.advanceTimersByTimeAsync(99);
    expect(FakeSocket.all.length).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(FakeSocket.all.length).toBe(2);
    FakeSocket.all[1].drop();
    await vi.advanceTimersByTimeAsync(0);
    expect(statuses.at(-1)).toEqual({ state: 'reconnecting', inMs: 200, attempt: 2 });
    await vi.advanceTimersByTimeAsync(200);
    const ws = FakeSocket.all[2];
    ws.open();
    ws.message('{"type":"attached","session":"main","new":false,"mode":"interactive"}');
    ws.drop();
    await vi.advanceTimersByTimeAsync(0);
    expect(statuses.at(-1)).toEqual({ state: 'reconnecting', inMs: 100, attempt: 1 });
    conn.close();
  });

  it('stops for good when the probe says the session ended', async () => {
    const { conn, statuses } = setup(async () => ({ ended: 'Workshop stopped.' }));
    conn.connect();
    FakeSocket.all[0].drop();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(statuses.at(-1)).toEqual({ state: 'ended', reason: 'Workshop stopped.' });
    expect(FakeSocket.all.length).toBe(1);
    conn.close();
  });

  it('waits for a keypress after the shell exits, and close() stops reconnecting', async () => {
    const { conn, statuses } = setup();
    conn.connect();
    const ws = FakeSocket.all[0];
    ws.open();
    ws.message('{"type":"exit","code":0}');
    ws.drop(1000);
    await vi.advanceTimersByTimeAsync(5000);
    expect(statuses.at(-1)).toEqual({ state: 'exited', code: 0 });
    expect(FakeSocket.all.length).toBe(1);
    conn.reconnectNow();
    expect(FakeSocket.all.length).toBe(2);
    conn.close();
    FakeSocket.all[1].drop();
    await vi.advanceTimersByTimeAsync(5000);
    expect(FakeSocket.all.length).toBe(2);
  });

  it('asks for a fresh ticket URL per attempt and treats a refused ticket as a drop', async () => {
    let n = 0;
    let refuse = false;
    const probes: number[] = [];
    const conn = new TerminalConnection(
      {
        url: async () => {
          if (refuse) throw new Error('ticket refused');
          return `ws://x/t?ticket=ctk_${n++}`;
        },
        probe: async () => {
          probes.push(n);
          return { ended: 'Session over.' };
        },
      },
      { onOutput: () => {}, onReplay: () => {}, onControl: () => {}, onStatus: () => {} },
    );
    conn.connect();
    await vi.waitFor(() => expect(FakeSocket.all).toHaveLength(1));
    expect(FakeSocket.all[0].url).toBe('ws://x/t?ticket=ctk_0');
    conn.reconnectNow();
    await vi.waitFor(() => expect(FakeSocket.all).toHaveLength(2));
    expect(FakeSocket.all[1].url).toBe('ws://x/t?ticket=ctk_1');
    refuse = true;
    conn.reconnectNow();
    await vi.waitFor(() => expect(conn.current).toEqual({ state: 'ended', reason: 'Session over.' }));
    expect(FakeSocket.all).toHaveLength(2);
    expect(probes).toEqual([2]);
    conn.close();
  });
});

describe('a terminal socket opened before its terminal (early.ts)', () => {
  beforeEach(() => {
    FakeSocket.all = [];
    vi.stubGlobal('WebSocket', FakeSocket);
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  function adopting(key: string, probe: () => Promise<'retry' | { ended: string }> = async () => 'retry') {
    const out: number[] = [];
    const statuses: ConnectionStatus[] = [];
    let replayed = 0;
    const conn = new TerminalConnection(
      { url: async () => 'ws://x/t?ticket=fresh', probe, adopt: () => takeEarly(key), backoff: new Backoff({ baseMs: 100, maxMs: 400, random: () => 0.999999 }) },
      { onOutput: (b) => out.push(...b), onReplay: () => {}, onReplayed: () => replayed++, onControl: () => {}, onStatus: (s) => statuses.push(s) },
    );
    return { conn, out, statuses, replayed: () => replayed };
  }

  it('hands over every frame that came before, in order, then the live ones', async () => {
    await openEarly('w/1/main', async () => 'ws://x/t?ticket=early');
    const ws = FakeSocket.all[0];
    ws.open();
    ws.message('{"type":"attached","session":"main","new":false,"mode":"interactive","replay_bytes":3}');
    ws.message(new Uint8Array([1, 2]).buffer);
    ws.message(new Uint8Array([3]).buffer);
    const { conn, out, statuses, replayed } = adopting('w/1/main');
    conn.resize(80, 24);
    conn.connect();
    await vi.advanceTimersByTimeAsync(0);
    expect(FakeSocket.all).toHaveLength(1); // adopted, no second socket
    expect(JSON.parse(ws.sent[0])).toEqual({ type: 'resize', cols: 80, rows: 24 });
    expect(out).toEqual([1, 2, 3]);
    expect(replayed()).toBe(1);
    expect(statuses.at(-1)).toEqual({ state: 'open' });
    ws.message(new Uint8Array([4]).buffer);
    expect(out).toEqual([1, 2, 3, 4]);
    expect(conn.send('a')).toBe(true);
    expect(JSON.parse(ws.sent.at(-1)!)).toEqual({ type: 'input', data: 'a' });
    conn.close();
  });

  it('sends the size once the socket opens when it was still upgrading', async () => {
    await openEarly('w/1/main', async () => 'ws://x/t?ticket=early');
    const ws = FakeSocket.all[0];
    const { conn } = adopting('w/1/main');
    conn.resize(90, 20);
    conn.connect();
    await vi.advanceTimersByTimeAsync(0);
    expect(ws.sent).toEqual([]);
    ws.open();
    expect(JSON.parse(ws.sent[0])).toEqual({ type: 'resize', cols: 90, rows: 20 });
    conn.close();
  });

  it('treats an early socket that closed as a drop: probe, then a fresh ticket', async () => {
    await openEarly('w/1/main', async () => 'ws://x/t?ticket=early');
    FakeSocket.all[0].drop(1006);
    const probe = vi.fn(async () => 'retry' as const);
    const { conn, statuses } = adopting('w/1/main', probe);
    conn.connect();
    await vi.advanceTimersByTimeAsync(0);
    expect(probe).toHaveBeenCalledTimes(1);
    expect(statuses.at(-1)).toEqual({ state: 'reconnecting', inMs: 100, attempt: 1 });
    await vi.advanceTimersByTimeAsync(100);
    expect(FakeSocket.all.map((w) => w.url)).toEqual(['ws://x/t?ticket=early', 'ws://x/t?ticket=fresh']);
    conn.close();
  });

  it('goes the usual way when the early ticket failed or the socket was for another terminal', async () => {
    await openEarly('w/1/main', async () => {
      throw new Error('ticket refused');
    });
    const a = adopting('w/1/main');
    a.conn.connect();
    await vi.advanceTimersByTimeAsync(0);
    expect(FakeSocket.all.map((w) => w.url)).toEqual(['ws://x/t?ticket=fresh']);
    a.conn.close();
    await openEarly('w/1/main', async () => 'ws://x/t?ticket=early');
    const b = adopting('w/1/other');
    b.conn.connect();
    await vi.advanceTimersByTimeAsync(0);
    expect(FakeSocket.all.map((w) => w.url)).toEqual(['ws://x/t?ticket=fresh', 'ws://x/t?ticket=early', 'ws://x/t?ticket=fresh']);
    b.conn.close();
    expect(takeEarly('w/1/main')).not.toBeNull(); // still there for its own terminal
  });

  it('is taken once, closed when its terminal closed first, and closed when nobody takes it', async () => {
    await openEarly('w/1/main', async () => 'ws://x/t?ticket=early');
    const { conn } = adopting('w/1/main');
    conn.connect();
    conn.close(); // before the adoption ran
    await vi.advanceTimersByTimeAsync(0);
    expect(FakeSocket.all[0].readyState).toBe(FakeSocket.CLOSED);
    expect(takeEarly('w/1/main')).toBeNull();
    await openEarly('w/2/main', async () => 'ws://x/t?ticket=unclaimed');
    await vi.advanceTimersByTimeAsync(15000);
    expect(FakeSocket.all[1].readyState).toBe(FakeSocket.CLOSED);
    expect(takeEarly('w/2/main')).toBeNull();
  });
});
