import { describe, expect, it } from 'vitest';
import { applyEvent, type LearnerLive } from './learnerEvents';

describe('learner events', () => {
  const empty: LearnerLive = { announcements: [], spotlight: null };
  it('applies snapshots per topic', () => {
    let s = applyEvent(empty, JSON.stringify({ type: 'announcements', announcements: [{ id: 'an-1', message: 'Break until 11', created_at: '2026-12-01T10:00:00Z' }] }));
    expect(s.announcements.map((a) => a.message)).toEqual(['Break until 11']);
    s = applyEvent(s, JSON.stringify({ type: 'spotlight', spotlight: { seat: 2, session: 'main', since: 'x' } }));
    expect(s.spotlight?.seat).toBe(2);
    expect(s.announcements).toHaveLength(1);
    s = applyEvent(s, JSON.stringify({ type: 'spotlight', spotlight: null }));
    expect(s.spotlight).toBeNull();
  });
  it('ignores what it does not understand', () => {
    expect(applyEvent(empty, 'not json')).toBe(empty);
    expect(applyEvent(empty, '{"type":"other"}')).toBe(empty);
  });
});
