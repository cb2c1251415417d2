// What the browser remembers between visits: the learner's seat (token + reconnect code), the
// instructor token, the theme and the learner's terminal tabs. Every access tolerates a browser
// with storage disabled.

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

export function loadInstructorToken(): string | null {
  return read(KEYS.instructor);
}

export function saveInstructorToken(token: string | null): void {
  write(KEYS.instructor, token);
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
