import { describe, expect, it } from 'vitest';
import { isPlausibleJoinCode, normalizeJoinCode, normalizeReconnectCode } from './joinCode';

describe('normalizeJoinCode', () => {
  it('uppercases and trims', () => {
    expect(normalizeJoinCode('  claude-xy9z ')).toBe('CLAUDE-XY9Z');
  });
  it('turns spaces into the dash', () => {
    expect(normalizeJoinCode('claude xy9z')).toBe('CLAUDE-XY9Z');
    expect(normalizeJoinCode('CLAUDE  -  XY9Z')).toBe('CLAUDE-XY9Z');
    expect(normalizeJoinCode('claude_xy9z')).toBe('CLAUDE-XY9Z');
  });
  it('keeps a bare suffix', () => {
    expect(normalizeJoinCode(' xy 9z')).toBe('XY9Z');
    expect(normalizeJoinCode('xy9z')).toBe('XY9Z');
  });
  it('drops punctuation', () => {
    expect(normalizeJoinCode('claude-xy9z.')).toBe('CLAUDE-XY9Z');
    expect(normalizeJoinCode('---')).toBe('');
  });
});

describe('isPlausibleJoinCode', () => {
  it('accepts full codes and bare suffixes', () => {
    expect(isPlausibleJoinCode('CLAUDE-XY9Z')).toBe(true);
    expect(isPlausibleJoinCode('XY9Z')).toBe(true);
  });
  it('rejects empty and short codes', () => {
    expect(isPlausibleJoinCode('')).toBe(false);
    expect(isPlausibleJoinCode('XY9')).toBe(false);
  });
});

describe('normalizeReconnectCode', () => {
  it('removes whitespace but keeps case', () => {
    expect(normalizeReconnectCode(' aB3d eF ')).toBe('aB3deF');
  });
});
