import { describe, expect, it, vi } from 'vitest';
import { openConfirmedLink, safeLinkTarget } from './links';

describe('safeLinkTarget', () => {
  it('keeps http and https URLs, normalised', () => {
    expect(safeLinkTarget('http://localhost:8000/docs')).toBe('http://localhost:8000/docs');
    expect(safeLinkTarget('HTTPS://Example.org/a b')).toBe('https://example.org/a%20b');
    expect(safeLinkTarget('https://bücher.example/')).toBe('https://xn--bcher-kva.example/');
  });
  it('refuses every other scheme and junk', () => {
    for (const bad of [
      'javascript:alert(1)',
      'JaVaScRiPt:alert(document.cookie)',
      ' javascript:alert(1)',
      'data:text/html,<script>alert(1)</script>',
      'vbscript:msgbox',
      'file:///etc/passwd',
      'blob:https://example.org/x',
      'ftp://example.org/',
      'about:blank',
      '//example.org/',
      'not a url',
      '',
    ]) {
      expect(safeLinkTarget(bad), bad).toBeNull();
    }
  });
});

describe('openConfirmedLink', () => {
  it('opens in a new tab without opener or referrer', () => {
    const open = vi.fn();
    openConfirmedLink('https://example.org/x', open as unknown as typeof window.open);
    expect(open).toHaveBeenCalledWith('https://example.org/x', '_blank', 'noopener,noreferrer');
  });
  it('never opens a non-http URL', () => {
    const open = vi.fn();
    openConfirmedLink('javascript:alert(1)', open as unknown as typeof window.open);
    expect(open).not.toHaveBeenCalled();
  });
});
