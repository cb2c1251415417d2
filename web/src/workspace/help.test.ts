import { describe, expect, it } from 'vitest';
import { parseHelpMark, shouldFile } from './help';

describe('help marks', () => {
  it('parses the help command mark', () => {
    expect(parseHelpMark('help;1764583200-123;my build fails')).toEqual({ id: '1764583200-123', message: 'my build fails' });
    expect(parseHelpMark('help;1-2;')).toEqual({ id: '1-2', message: '' });
    expect(parseHelpMark('other;1-2;x')).toBeNull();
    expect(parseHelpMark('help;abc;x')).toBeNull();
  });

  it('files each mark once and never an old replayed one', () => {
    const seen = new Set<string>();
    const now = 1764583200_000;
    expect(shouldFile('1764583200-1', seen, now)).toBe(true);
    expect(shouldFile('1764583200-1', seen, now), 'the same mark replayed').toBe(false);
    expect(shouldFile('1764580000-2', seen, now), 'an hour old').toBe(false);
    expect(shouldFile('0-3', seen, now)).toBe(false);
  });
});
