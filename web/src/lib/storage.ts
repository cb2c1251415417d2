// What the browser remembers between visits: the learner's seat (token + reconnect code), the
// theme and the learner's terminal tabs in localStorage; the instructor's short-lived session
// token in sessionStorage only (gone with the tab; the long-lived instructor token is never
// stored). Every access tolerates a browser with storage disabled.

export interface LearnerSession {
  token: string;
  odehash: string;
  code: string;
  workshop_id: string;
  workshop_name: string;
  seat: number;
  name?: string;
}

const KEYS = {
  learner: 'clarateach.learner',
  instructor: 'clarateach.instructor',
  instructorSession: 'clarateach.instructor.session',
  terminals: 'clarateach.terminals',
} as const;

function read(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function write(key: string, value: string | null): void {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    // Storage disabled: the session lasts as long as the tab.
  }
}

export function loadLearner(): LearnerSession | null {
  const raw = read(KEYS.learner);
  if (!raw) return null;
  try {
    const v = JSON.parse(raw) as Partial<LearnerSession>;
    if (typeof v.token === 'string' && typeof v.odehash === 'string' && typeof v.seat === 'number') {
      return v as LearnerSession;
    }
  } catch {
    // fall through
  }
  return null;
}

export function saveLearner(s: LearnerSession | null): void {
  write(KEYS.learner, s ? JSON.stringify(s) : null);
}

/** A browser session standing in for the instructor token (`POST /api/instructor/sessions`). */
export interface InstructorSession {
  token: string;
  expires_at: string;
}

/** The instructor session of this tab, if it has not expired. */
export function loadInstructorSession(now: number = Date.now()): InstructorSession | null {
  // Earlier versions kept the long-lived instructor token in localStorage: drop it.
  write(KEYS.instructor, null);
  let raw: string | null = null;
  try {
    raw = sessionStorage.getItem(KEYS.instructorSession);
  } catch {
    return null;
  }
  if (!raw) return null;
  try {
    const v = JSON.parse(raw) as Partial<InstructorSession>;
    if (typeof v.token === 'string' && typeof v.expires_at === 'string' && Date.parse(v.expires_at) > now) {
      return { token: v.token, expires_at: v.expires_at };
    }
  } catch {
    // fall through
  }
  return null;
}

export function saveInstructorSession(s: InstructorSession | null): void {
  try {
    if (s === null) sessionStorage.removeItem(KEYS.instructorSession);
    else sessionStorage.setItem(KEYS.instructorSession, JSON.stringify(s));
  } catch {
    // Storage disabled: the session lasts as long as the page.
  }
}

export function loadTerminalTabs(workshopId: string): string[] {
  try {
    const v = JSON.parse(read(`${KEYS.terminals}.${workshopId}`) ?? 'null') as unknown;
    if (Array.isArray(v) && v.every((x) => typeof x === 'string') && v.length > 0) return v as string[];
  } catch {
    // fall through
  }
  return ['main'];
}

export function saveTerminalTabs(workshopId: string, tabs: string[]): void {
  write(`${KEYS.terminals}.${workshopId}`, JSON.stringify(tabs));
}
