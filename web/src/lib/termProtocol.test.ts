import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeInput, encodeResize, isValidSessionName, terminalUrl } from './termProtocol';

describe('encode', () => {
  it('encodes input and resize as JSON text frames', () => {
    expect(JSON.parse(encodeInput('ls\r'))).toEqual({ type: 'input', data: 'ls\r' });
    expect(JSON.parse(encodeResize(120.7, 40))).toEqual({ type: 'resize', cols: 120, rows: 40 });
    expect(JSON.parse(encodeResize(0, -3))).toEqual({ type: 'resize', cols: 1, rows: 1 });
  });
});

describe('decodeFrame', () => {
  it('passes binary output through untouched', () => {
    const bytes = new Uint8Array([0xe2, 0x82]); // half of a UTF-8 character
    const f = decodeFrame(bytes.buffer);
    expect(f.kind).toBe('output');
    if (f.kind === 'output') expect(Array.from(f.bytes)).toEqual([0xe2, 0x82]);
  });
  it('decodes json output frames', () => {
    const f = decodeFrame('{"type":"output","data":"é"}');
    expect(f.kind === 'output' && Array.from(f.bytes)).toEqual([0xc3, 0xa9]);
  });
  it('decodes every control message', () => {
    expect(decodeFrame('{"type":"attached","session":"main","new":true,"mode":"watch"}')).toEqual({
      kind: 'control',
      msg: { type: 'attached', session: 'main', new: true, mode: 'watch', replay_bytes: 0 },
    });
    expect(decodeFrame('{"type":"exit","code":3}')).toEqual({ kind: 'control', msg: { type: 'exit', code: 3 } });
    expect(decodeFrame('{"type":"error","code":"read_only","message":"no"}')).toEqual({
      kind: 'control',
      msg: { type: 'error', code: 'read_only', message: 'no' },
    });
    expect(decodeFrame('{"type":"takeover","active":true}')).toEqual({
      kind: 'control',
      msg: { type: 'takeover', active: true },
    });
    expect(decodeFrame('{"type":"notice","message":"hi"}')).toEqual({
      kind: 'control',
      msg: { type: 'notice', message: 'hi' },
    });
  });
  it('reports garbage as unknown instead of throwing', () => {
    expect(decodeFrame('not json').kind).toBe('unknown');
    expect(decodeFrame('[1,2]').kind).toBe('unknown');
    expect(decodeFrame('{"type":"mystery"}').kind).toBe('unknown');
  });
});

describe('terminalUrl', () => {
  it('builds a ws url on the same origin', () => {
    const u = new URL(terminalUrl('https://x.test/workspace', { ticket: 'a b', session: 'main', mode: 'interactive' }));
    expect(u.protocol).toBe('wss:');
    expect(u.host).toBe('x.test');
    expect(u.pathname).toBe('/api/session/terminal');
    expect(u.searchParams.get('ticket')).toBe('a b');
    expect(u.searchParams.get('token')).toBeNull();
    expect(u.searchParams.get('workshop_id')).toBeNull();
  });
  it('adds the instructor params', () => {
    const u = new URL(
      terminalUrl('http://127.0.0.1:8080/', { ticket: 't', session: 's', mode: 'watch', workshopId: 'ws-1', seat: 3 }),
    );
    expect(u.protocol).toBe('ws:');
    expect(u.searchParams.get('workshop_id')).toBe('ws-1');
    expect(u.searchParams.get('seat')).toBe('3');
    expect(u.searchParams.get('mode')).toBe('watch');
  });
});

describe('isValidSessionName', () => {
  it('follows the daemon rule', () => {
    expect(isValidSessionName('main')).toBe(true);
    expect(isValidSessionName('term-2_x')).toBe(true);
    expect(isValidSessionName('')).toBe(false);
    expect(isValidSessionName('a b')).toBe(false);
    expect(isValidSessionName('x'.repeat(33))).toBe(false);
  });
});
