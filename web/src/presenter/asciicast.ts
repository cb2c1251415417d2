// asciicast v2 parsing and timing for the replay player: a JSON header line, then
// `[seconds, code, data]` lines ("o" output, "r" resize "COLSxROWS", "m" marker). Lines that
// do not parse are skipped, so a cast cut off mid-line (a full disk) still plays.

export interface CastHeader {
  version: number;
  width: number;
  height: number;
  timestamp?: number;
  title?: string;
}

export interface CastEvent {
  t: number;
  code: string;
  data: string;
}

export interface Cast {
  header: CastHeader;
  events: CastEvent[];
  duration: number;
}

export function parseCast(text: string): Cast {
  const lines = text.split('\n');
  let header: CastHeader | null = null;
  const events: CastEvent[] = [];
  for (const line of lines) {
    if (!line.trim()) continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      continue;
    }
    if (!header) {
      const h = v as Partial<CastHeader>;
      if (h && typeof h === 'object' && h.version === 2) {
        header = { version: 2, width: Number(h.width) || 80, height: Number(h.height) || 24, timestamp: h.timestamp, title: h.title };
        continue;
      }
      throw new Error('Not an asciicast v2 recording.');
    }
    if (Array.isArray(v) && typeof v[0] === 'number' && typeof v[1] === 'string' && typeof v[2] === 'string') {
      events.push({ t: v[0], code: v[1], data: v[2] });
    }
  }
  if (!header) throw new Error('Not an asciicast v2 recording.');
  const duration = events.length ? events[events.length - 1].t : 0;
  return { header, events, duration };
}

/** Index of the first event after time `t` (events at exactly `t` are included before it). */
export function eventsUntil(cast: Cast, t: number): number {
  let lo = 0;
  let hi = cast.events.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cast.events[mid].t <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export function parseSize(data: string): { cols: number; rows: number } | null {
  const m = /^(\d+)x(\d+)$/.exec(data);
  if (!m) return null;
  const cols = Number(m[1]);
  const rows = Number(m[2]);
  return cols > 0 && rows > 0 && cols <= 1000 && rows <= 1000 ? { cols, rows } : null;
}

export function formatTime(s: number): string {
  const total = Math.max(0, Math.floor(s));
  const m = Math.floor(total / 60);
  const sec = total % 60;
  return `${m}:${sec.toString().padStart(2, '0')}`;
}
