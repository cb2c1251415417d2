import { describe, expect, it } from 'vitest';
import { checkBySeat, describeOutcome } from '../api/toolkit';

describe('toolkit helpers', () => {
  it('says what a broadcast did to a file', () => {
    expect(describeOutcome({ path: 'a.py', outcome: 'merged' })).toContain('merged with your changes');
    expect(describeOutcome({ path: 'a.py', outcome: 'conflicted', new_path: 'a.py.new' })).toContain('a.py.new');
    expect(describeOutcome({ path: 'a.py', outcome: 'failed', error: 'cannot write' })).toContain('cannot write');
  });
  it('indexes check results by seat', () => {
    const m = checkBySeat({
      command: 'true',
      timeout_s: 5,
      ran_at: '2026-12-01T10:00:00Z',
      duration_ms: 3,
      results: [{ seat: 2, exit_code: 1, stdout: '', stderr: 'x', duration_ms: 1, passed: false }],
    });
    expect(m.get(2)?.passed).toBe(false);
    expect(m.has(1)).toBe(false);
  });
});
