import { describe, expect, it } from 'vitest';
import { parseWatchEvent } from './fileWatcher';

describe('parseWatchEvent', () => {
  it('reads single events, batches and renames', () => {
    expect(parseWatchEvent('{"kind":"modified","path":"/a.py"}')).toEqual([{ kind: 'modified', paths: ['/a.py'] }]);
    expect(parseWatchEvent('{"type":"renamed","from":"a","to":"/b"}')).toEqual([{ kind: 'renamed', paths: ['/a', '/b'] }]);
    expect(parseWatchEvent('{"events":[{"path":"/x"},{"paths":["/y","/z"]}]}')).toEqual([
      { kind: 'change', paths: ['/x'] },
      { kind: 'change', paths: ['/y', '/z'] },
    ]);
    expect(parseWatchEvent('[{"path":"/q"}]')).toEqual([{ kind: 'change', paths: ['/q'] }]);
  });
  it('ignores garbage', () => {
    expect(parseWatchEvent('nope')).toEqual([]);
    expect(parseWatchEvent('42')).toEqual([]);
  });
});
