// Links in terminal output are written by whatever runs in the seat, so they are untrusted: only
// http(s) URLs may be opened, always in a new tab without an opener or referrer (the page that
// opens cannot script this one, nor learn its URL with the token-bearing query), and only after
// the user confirmed the exact URL (shown as the browser will load it, IDN hosts in punycode).

/** The URL to open for `uri` from terminal output, or null when it is not an http(s) URL. */
export function safeLinkTarget(uri: string): string | null {
  let url: URL;
  try {
    url = new URL(uri.trim());
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  if (!url.hostname) return null;
  return url.href;
}

/** Opens a confirmed link: new tab, `noopener,noreferrer`. */
export function openConfirmedLink(href: string, open: typeof window.open = window.open.bind(window)): void {
  const target = safeLinkTarget(href);
  if (!target) return;
  open(target, '_blank', 'noopener,noreferrer');
}
