// The learner's side of the help queue: the `help` command's terminal mark
// (OSC 7700;help;ID;message) becomes a help request filed with the learner's own token, each
// mark once (a scrollback replay shows old marks again), and the learner's place is polled.

/** Parses the payload of an OSC 7700 sequence (what follows `7700;`). */
export function parseHelpMark(data: string): { id: string; message: string } | null {
  const m = /^help;([0-9]+-[0-9]+);(.*)$/s.exec(data);
  if (!m) return null;
  return { id: m[1], message: m[2].slice(0, 500) };
}

/** Marks older than this (by the seat's clock in the id) are replays, never filed. */
const MAX_AGE_S = 600;

/** Whether a mark should be filed now; remembers it in `seen` (persisted by the caller). */
export function shouldFile(id: string, seen: Set<string>, nowMs: number): boolean {
  if (seen.has(id)) return false;
  seen.add(id);
  const at = Number(id.split('-')[0]);
  return Number.isFinite(at) && at > 0 && Math.abs(nowMs / 1000 - at) <= MAX_AGE_S;
}

const KEY = 'clarateach.help.seen';

export function loadSeen(): Set<string> {
  try {
    const v = JSON.parse(localStorage.getItem(KEY) ?? '[]');
    return new Set(Array.isArray(v) ? v.filter((x) => typeof x === 'string').slice(-100) : []);
  } catch {
    return new Set();
  }
}

export function saveSeen(seen: Set<string>): void {
  try {
    localStorage.setItem(KEY, JSON.stringify([...seen].slice(-100)));
  } catch {
    // Storage full or disabled: a replay may then ask again, and the server keeps one request per seat.
  }
}
