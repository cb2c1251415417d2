import { describe, expect, it } from 'vitest';
import { Backoff } from './backoff';

describe('Backoff', () => {
  it('grows exponentially up to the cap', () => {
    const b = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 0.999999 });
    const delays = Array.from({ length: 6 }, () => b.next());
    expect(delays).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it('jitters between half and the full ceiling', () => {
    const low = new Backoff({ baseMs: 400, random: () => 0 });
    expect(low.next()).toBe(200);
    const values = new Set<number>();
    const b = new Backoff({ baseMs: 1000, maxMs: 1000 });
    for (let i = 0; i < 200; i++) {
      const d = b.next();
      expect(d).toBeGreaterThanOrEqual(500);
      expect(d).toBeLessThanOrEqual(1000);
      values.add(d);
    }
    expect(values.size).toBeGreaterThan(20);
  });

  it('starts over after reset', () => {
    const b = new Backoff({ baseMs: 100, random: () => 0.999999 });
    b.next();
    b.next();
    expect(b.attempts).toBe(2);
    b.reset();
    expect(b.attempts).toBe(0);
    expect(b.next()).toBe(100);
  });
});
