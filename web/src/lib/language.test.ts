import { describe, expect, it } from 'vitest';
import { languageForPath } from './language';

describe('languageForPath', () => {
  it('maps extensions and special names', () => {
    expect(languageForPath('/src/main.py')).toBe('python');
    expect(languageForPath('/a/B.TSX')).toBe('typescript');
    expect(languageForPath('/Dockerfile')).toBe('dockerfile');
    expect(languageForPath('/notes')).toBe('plaintext');
    expect(languageForPath('/x.unknown')).toBe('plaintext');
  });
});
