import { describe, expect, it } from 'vitest';
import { unseenMove } from './MovedNotice';

describe('unseenMove', () => {
  it('announces a move once per move time', () => {
    const t = '2026-12-01T19:00:00Z';
    expect(unseenMove({ workshop_id: 'ws-a', seat: 1 }, null)).toBeNull();
    expect(unseenMove({ workshop_id: 'ws-a', seat: 1, moved_at: t }, null)).toBe(t);
    expect(unseenMove({ workshop_id: 'ws-a', seat: 1, moved_at: t }, t)).toBeNull();
    expect(unseenMove({ workshop_id: 'ws-a', seat: 1, moved_at: '2026-12-01T19:05:00Z' }, t)).toBe('2026-12-01T19:05:00Z');
  });
});
