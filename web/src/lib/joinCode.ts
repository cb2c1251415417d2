// Join-code and reconnect-code normalisation. Learners type codes from a projector, so case,
// stray spaces and spaces instead of the dash are forgiven; the server normalises again.

/** Normalises a workshop join code: `" claude xy9z "` -> `"CLAUDE-XY9Z"`, `"xy9z"` -> `"XY9Z"`. */
export function normalizeJoinCode(input: string): string {
  const clean = (s: string) => s.toUpperCase().replace(/[^A-Z0-9]/g, '');
  const upper = input.replace(/_/g, '-');
  if (upper.includes('-')) {
    return upper.split('-').map(clean).filter((p) => p.length > 0).join('-');
  }
  const tokens = upper.split(/\s+/).map(clean).filter((p) => p.length > 0);
  const last = tokens[tokens.length - 1];
  if (tokens.length >= 2 && last.length === 4) {
    return `${tokens.slice(0, -1).join('')}-${last}`;
  }
  return tokens.join('');
}

/** Whether a normalised join code is plausible enough to send (the server has the final word). */
export function isPlausibleJoinCode(code: string): boolean {
  return /^[A-Z0-9]+(-[A-Z0-9]+)*$/.test(code) && code.replace(/-/g, '').length >= 4 && code.length <= 40;
}

/** Normalises a reconnect code: trims and drops inner whitespace; case is preserved. */
export function normalizeReconnectCode(input: string): string {
  return input.replace(/\s+/g, '');
}
