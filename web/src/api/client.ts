// Thin fetch wrapper: JSON in and out, `{code, message}` errors turned into ApiError, bearer
// auth, and the typed calls the pages use. Same origin as the page, so no CORS.

import type {
  Announcement,
  AnnouncementList,
  RecordingList,
  SpotlightState,
  CreateWorkshopRequest,
  FileInfo,
  HelpRequest,
  HelpStatusResponse,
  JoinRequest,
  JoinResponse,
  LearnerInfo,
  Preview,
  PreviewList,
  PreviewOpen,
  ReadFileResponse,
  Seat,
  SeatImage,
  Template,
  Workshop,
} from './types';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Seconds from a Retry-After header, if any. */
    readonly retryAfter: number | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** The token was refused: session over (workshop stopped) or instructor token wrong. */
  get isUnauthorized(): boolean {
    return this.status === 401;
  }
}

interface RequestOptions {
  method?: string;
  token?: string | null;
  body?: unknown;
  signal?: AbortSignal;
  /** Let the request outlive the page (the last autosave when the tab closes); browsers cap such bodies at 64 KB. */
  keepalive?: boolean;
}

async function send(path: string, opts: RequestOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
  let body: string | undefined;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  let res: Response;
  try {
    res = await fetch(path, {
      method: opts.method ?? 'GET',
      headers,
      body,
      signal: opts.signal,
      keepalive: !!opts.keepalive && (body?.length ?? 0) < 20_000, // <= 3 bytes per UTF-16 unit
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', 'Cannot reach the ClaraTeach server. Check your connection.');
  }
  if (!res.ok) throw await toError(res);
  return res;
}

async function toError(res: Response): Promise<ApiError> {
  let code = `http_${res.status}`;
  let message = res.statusText || `Request failed (${res.status})`;
  try {
    const body = (await res.json()) as { code?: unknown; message?: unknown };
    if (typeof body.code === 'string') code = body.code;
    if (typeof body.message === 'string' && body.message) message = body.message;
  } catch {
    // Not JSON (proxy error page); keep the status text.
  }
  const ra = res.headers.get('Retry-After');
  const retryAfter = ra !== null && /^\d+$/.test(ra.trim()) ? Number(ra.trim()) : null;
  return new ApiError(res.status, code, message, retryAfter);
}

export async function json<T>(path: string, opts?: RequestOptions): Promise<T> {
  const res = await send(path, opts);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

/** Encodes a workspace path (`/src/a b.py`) for the URL, segment by segment. */
export function encodeFilePath(path: string): string {
  return path
    .split('/')
    .filter((s) => s.length > 0)
    .map(encodeURIComponent)
    .join('/');
}

export interface TicketRequest {
  workshop_id?: string;
  seat?: number;
  mode?: string;
}

function seatQuery(seat?: { workshop_id: string; seat: number }): string {
  return seat ? `?workshop_id=${encodeURIComponent(seat.workshop_id)}&seat=${seat.seat}` : '';
}

export const api = {
  join: (req: JoinRequest) => json<JoinResponse>('/api/join', { method: 'POST', body: req }),

  /** A one-time ticket (30 s, single use) for one WebSocket of a seat, bound to seat and mode. */
  sessionTicket: (token: string, req: TicketRequest) =>
    json<{ ticket: string; expires_in: number }>('/api/session/ticket', { method: 'POST', token, body: req }),

  // Instructor browser sessions: the long-lived token is traded once and never kept.
  createInstructorSession: (instructorToken: string) =>
    json<{ token: string; expires_at: string }>('/api/instructor/sessions', { method: 'POST', token: instructorToken }),
  revokeInstructorSession: (sessionToken: string) =>
    json<unknown>('/api/instructor/sessions', { method: 'DELETE', token: sessionToken }),
  resetSeat: (token: string, id: string, seat: number) =>
    json<{ seat: number; odehash: string; generation: number }>(
      `/api/workshops/${encodeURIComponent(id)}/seats/${seat}/reset`,
      { method: 'POST', token },
    ),

  // Help queue (issue 10).
  askHelp: (token: string, req: { message?: string; open_file?: string }) =>
    json<HelpStatusResponse>('/api/session/help', { method: 'POST', token, body: req }),
  myHelp: (token: string, signal?: AbortSignal) => json<HelpStatusResponse>('/api/session/help', { token, signal }),
  listHelp: (token: string, id: string, signal?: AbortSignal) =>
    json<{ requests: HelpRequest[] }>(`/api/workshops/${encodeURIComponent(id)}/help`, { token, signal }).then((r) => r.requests),
  claimHelp: (token: string, id: string, helpId: string) =>
    json<HelpRequest>(`/api/workshops/${encodeURIComponent(id)}/help/${encodeURIComponent(helpId)}/claim`, { method: 'POST', token }),
  resolveHelp: (token: string, id: string, helpId: string) =>
    json<HelpRequest>(`/api/workshops/${encodeURIComponent(id)}/help/${encodeURIComponent(helpId)}/resolve`, { method: 'POST', token }),

  /** What the learner token stands for, with the template's README (issue 11). */
  me: (token: string, signal?: AbortSignal) => json<LearnerInfo>('/api/me', { token, signal }),
  // Previews of the seat's web apps (issue 12); instructors name the seat.
  listPreviews: (token: string, seat?: { workshop_id: string; seat: number }, signal?: AbortSignal) =>
    json<PreviewList>(`/api/session/previews${seatQuery(seat)}`, { token, signal }).then((r) => r.previews),
  setPreviewPublic: (token: string, port: number, isPublic: boolean) =>
    json<Preview>(`/api/session/previews/${port}`, { method: 'PUT', token, body: { public: isPublic } }),
  /** A URL on the preview's own origin with a one-time ticket that signs this browser in there. */
  openPreview: (token: string, port: number, seat?: { workshop_id: string; seat: number }) =>
    json<PreviewOpen>(`/api/session/previews/${port}/open${seatQuery(seat)}`, { method: 'POST', token }).then((r) => r.url),

  // Learner seat traffic.
  listFiles: (token: string, path: string, signal?: AbortSignal) =>
    json<{ files: FileInfo[] }>(`/api/session/files?path=${encodeURIComponent(path)}`, { token, signal }).then(
      (r) => r.files,
    ),
  readFile: (token: string, path: string) =>
    json<ReadFileResponse>(`/api/session/files/${encodeFilePath(path)}`, { token }),
  writeFile: (token: string, path: string, content: string) =>
    json<unknown>(`/api/session/files/${encodeFilePath(path)}`, { method: 'PUT', token, body: { content }, keepalive: true }),
  deleteFile: (token: string, path: string) =>
    json<unknown>(`/api/session/files/${encodeFilePath(path)}`, { method: 'DELETE', token }),
  renameFile: (token: string, from: string, to: string) =>
    json<unknown>('/api/session/files-rename', { method: 'POST', token, body: { from, to } }),
  mkdir: (token: string, path: string) =>
    json<unknown>('/api/session/files-mkdir', { method: 'POST', token, body: { path } }),

  // Instructor.
  listTemplates: (token: string, signal?: AbortSignal) =>
    json<{ templates: Template[] }>('/api/templates', { token, signal }).then((r) => r.templates),
  listImages: (token: string, signal?: AbortSignal) =>
    json<{ images: SeatImage[] }>('/api/images', { token, signal }).then((r) => r.images),
  listWorkshops: (token: string, signal?: AbortSignal) =>
    json<{ workshops: Workshop[] }>('/api/workshops', { token, signal }).then((r) => r.workshops),
  createWorkshop: (token: string, req: CreateWorkshopRequest) =>
    json<{ workshop: Workshop }>('/api/workshops', { method: 'POST', token, body: req }).then((r) => r.workshop),
  getWorkshop: (token: string, id: string, signal?: AbortSignal) =>
    json<{ workshop: Workshop }>(`/api/workshops/${encodeURIComponent(id)}`, { token, signal }).then((r) => r.workshop),
  startWorkshop: (token: string, id: string) =>
    json<{ workshop: Workshop }>(`/api/workshops/${encodeURIComponent(id)}/start`, { method: 'POST', token }),
  /** Pauses (or resumes) every seat, or one: processes, memory and terminals are kept. */
  pauseSeats: (token: string, id: string, paused: boolean, seat?: number) =>
    json<{ seats: Seat[] }>(
      `/api/workshops/${encodeURIComponent(id)}${seat === undefined ? '' : `/seats/${seat}`}/${paused ? 'pause' : 'resume'}`,
      { method: 'POST', token },
    ).then((r) => r.seats),
  stopWorkshop: (token: string, id: string) =>
    json<unknown>(`/api/workshops/${encodeURIComponent(id)}/stop`, { method: 'POST', token }),
  deleteWorkshop: (token: string, id: string) =>
    json<unknown>(`/api/workshops/${encodeURIComponent(id)}`, { method: 'DELETE', token }),
  listSeats: (token: string, id: string, signal?: AbortSignal) =>
    json<{ seats: Seat[] }>(`/api/workshops/${encodeURIComponent(id)}/seats`, { token, signal }).then((r) => r.seats),
  /** Downloads the export archive as a Blob (the route needs the bearer header, so no plain link). */
  exportWorkshop: async (token: string, id: string): Promise<Blob> => {
    const res = await send(`/api/workshops/${encodeURIComponent(id)}/export`, { token });
    return res.blob();
  },

  // Presenting (issue 10): announcements, spotlight, recordings.
  announce: (token: string, id: string, message: string) =>
    json<Announcement>(`/api/workshops/${encodeURIComponent(id)}/announcements`, { method: 'POST', token, body: { message } }),
  announcements: (token: string, id: string) =>
    json<AnnouncementList>(`/api/workshops/${encodeURIComponent(id)}/announcements`, { token }),
  dismissAnnouncement: (token: string, id: string, announcementId: string) =>
    json<void>(`/api/workshops/${encodeURIComponent(id)}/announcements/${encodeURIComponent(announcementId)}`, { method: 'DELETE', token }),
  spotlight: (token: string, id: string, seat: number, session: string) =>
    json<SpotlightState>(`/api/workshops/${encodeURIComponent(id)}/spotlight`, { method: 'PUT', token, body: { seat, session } }),
  spotlightOff: (token: string, id: string) =>
    json<void>(`/api/workshops/${encodeURIComponent(id)}/spotlight`, { method: 'DELETE', token }),
  getSpotlight: (token: string, id: string, signal?: AbortSignal) =>
    json<SpotlightState>(`/api/workshops/${encodeURIComponent(id)}/spotlight`, { token, signal }),
  recordings: (token: string, id: string, seat: number) =>
    json<RecordingList>(`/api/workshops/${encodeURIComponent(id)}/seats/${seat}/recordings`, { token }),
  /** One recording's asciicast v2 text. */
  recording: async (token: string, id: string, seat: number, name: string): Promise<string> => {
    const res = await send(`/api/workshops/${encodeURIComponent(id)}/seats/${seat}/recordings/${encodeURIComponent(name)}`, { token });
    return res.text();
  },
};

/** A human sentence for an error, with the join-specific wording learners need. */
export function describeError(err: unknown, context: 'join' | 'rejoin' | 'general' = 'general'): string {
  if (!(err instanceof ApiError)) return err instanceof Error ? err.message : 'Something went wrong.';
  switch (err.code) {
    case 'workshop_not_found':
      return 'No workshop matches that code. Check the code with your instructor.';
    case 'not_found':
      return context === 'rejoin'
        ? 'That reconnect code does not match a seat in this workshop.'
        : context === 'join'
          ? 'No workshop matches that code. Check the code with your instructor.'
          : err.message;
    case 'workshop_not_running':
      return context === 'general'
        ? err.message
        : 'This workshop is not running. Wait for your instructor to start it, then try again.';
    case 'workshop_full':
      return 'This workshop is full: every seat is taken. Ask your instructor to add seats.';
    case 'too_many_attempts':
      return err.retryAfter !== null
        ? `Too many attempts. Try again in ${err.retryAfter} second${err.retryAfter === 1 ? '' : 's'}.`
        : 'Too many attempts. Wait a moment and try again.';
    case 'seat_paused':
      return 'Your instructor paused this seat for a break. Everything is kept; it goes on where it was when they resume it.';
    case 'no_capacity':
      return 'No workspace capacity is available right now. Try again in a minute.';
    case 'unauthorized':
      return context === 'general' ? 'Your session is no longer valid.' : err.message;
    default:
      return err.message;
  }
}
