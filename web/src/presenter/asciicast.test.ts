import { describe, expect, it } from 'vitest';
import { eventsUntil, formatTime, parseCast, parseSize } from './asciicast';

const CAST = [
  '{"version":2,"width":120,"height":40,"timestamp":1764590000,"title":"seat 1: main"}',
  '[0.5,"o","$ ls\\r\\n"]',
  '[1.0,"r","100x30"]',
  'garbage',
  '[2.25,"o","done\\r\\n"]',
  '[2.3,"o","cut off',
].join('\n');

describe('asciicast', () => {
  it('parses the header and events, skipping broken lines', () => {
    const c = parseCast(CAST);
    expect(c.header).toMatchObject({ width: 120, height: 40, title: 'seat 1: main' });
    expect(c.events.map((e) => e.code)).toEqual(['o', 'r', 'o']);
    expect(c.events[0].data).toBe('$ ls\r\n');
    expect(c.duration).toBe(2.25);
  });
  it('finds the events up to a time', () => {
    const c = parseCast(CAST);
    expect(eventsUntil(c, 0)).toBe(0);
    expect(eventsUntil(c, 0.5)).toBe(1);
    expect(eventsUntil(c, 2)).toBe(2);
    expect(eventsUntil(c, 99)).toBe(3);
  });
  it('refuses what is not a v2 cast', () => {
    expect(() => parseCast('{"version":1}\n')).toThrow();
    expect(() => parseCast('')).toThrow();
  });
  it('sizes and times', () => {
    expect(parseSize('80x24')).toEqual({ cols: 80, rows: 24 });
    expect(parseSize('0x24')).toBeNull();
    expect(parseSize('80x24x1')).toBeNull();
    expect(formatTime(125.7)).toBe('2:05');
  });
});
