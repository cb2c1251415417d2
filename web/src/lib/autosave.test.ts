import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Autosave, type SaveState } from './autosave';

function deferred() {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('Autosave', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('debounces bursts of edits into one save of the last content', async () => {
    const saves: [string, string][] = [];
    const a = new Autosave({ save: async (p, c) => void saves.push([p, c]) });
    a.change('/a.py', 'p');
    await vi.advanceTimersByTimeAsync(300);
    a.change('/a.py', 'pr');
    await vi.advanceTimersByTimeAsync(300);
    a.change('/a.py', 'print');
    expect(saves).toEqual([]);
    await vi.advanceTimersByTimeAsync(499);
    expect(saves).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(saves).toEqual([['/a.py', 'print']]);
    expect(a.isDirty('/a.py')).toBe(false);
  });

  it('flush saves immediately and reports states', async () => {
    const states: SaveState[] = [];
    const saves: string[] = [];
    const a = new Autosave({ save: async (_p, c) => void saves.push(c), onState: (_p, s) => states.push(s) });
    a.change('/x', 'one');
    await a.flush('/x');
    expect(saves).toEqual(['one']);
    expect(states).toEqual(['dirty', 'saving', 'clean']);
    await vi.advanceTimersByTimeAsync(1000);
    expect(saves).toEqual(['one']);
  });

  it('never runs two saves of a file at once and saves edits made during a save', async () => {
    const saves: string[] = [];
    const gates: ReturnType<typeof deferred>[] = [];
    let concurrent = 0;
    let maxConcurrent = 0;
    const a = new Autosave({
      delayMs: 100,
      save: async (_p, c) => {
        concurrent++;
        maxConcurrent = Math.max(maxConcurrent, concurrent);
        const g = deferred();
        gates.push(g);
        await g.promise;
        saves.push(c);
        concurrent--;
      },
    });
    a.change('/f', 'v1');
    await vi.advanceTimersByTimeAsync(100);
    expect(gates.length).toBe(1);
    a.change('/f', 'v2');
    const flushed = a.flush('/f');
    await vi.advanceTimersByTimeAsync(0);
    expect(gates.length).toBe(1);
    gates[0].resolve();
    await vi.advanceTimersByTimeAsync(0);
    expect(gates.length).toBe(2);
    gates[1].resolve();
    await flushed;
    expect(saves).toEqual(['v1', 'v2']);
    expect(maxConcurrent).toBe(1);
  });

  it('keeps content after a failed save and retries on flush', async () => {
    let fail = true;
    const saves: string[] = [];
    const states: SaveState[] = [];
    const a = new Autosave({
      save: async (_p, c) => {
        if (fail) throw new Error('offline');
        saves.push(c);
      },
      onState: (_p, s) => states.push(s),
    });
    a.change('/f', 'data');
    await vi.advanceTimersByTimeAsync(500);
    expect(states.at(-1)).toBe('error');
    expect(a.isDirty('/f')).toBe(true);
    fail = false;
    await a.flush('/f');
    expect(saves).toEqual(['data']);
    expect(states.at(-1)).toBe('clean');
  });

  it('forget drops pending content', async () => {
    const saves: string[] = [];
    const a = new Autosave({ save: async (_p, c) => void saves.push(c) });
    a.change('/f', 'x');
    a.forget('/f');
    await vi.advanceTimersByTimeAsync(1000);
    expect(saves).toEqual([]);
  });
});
