// Terminal WebSocket protocol (api/ws-protocol.md): output arrives as binary frames of raw PTY
// bytes (or `{"type":"output"}` text frames), control messages are JSON text frames.

import type { TerminalClientMessage, TerminalServerMessage } from '../api/types';
import type { components } from '../api/schema.gen';

/** Every server message but output, which arrives as bytes (`DecodedFrame.output`). */
export type ServerControl = Exclude<TerminalServerMessage, { type: 'output' }>;

export type DecodedFrame =
  | { kind: 'output'; bytes: Uint8Array }
  | { kind: 'control'; msg: ServerControl }
  | { kind: 'unknown'; raw: string };

/** How a viewer attaches (the Rust `TerminalMode`, through the generated schema). */
export type TerminalMode = components['schemas']['TerminalMode'];
const MODES: readonly TerminalMode[] = ['interactive', 'watch', 'takeover'];

const encoder = new TextEncoder();

export function encodeInput(data: string): string {
  return JSON.stringify({ type: 'input', data } satisfies TerminalClientMessage);
}

export function encodeResize(cols: number, rows: number): string {
  const clamp = (n: number) => Math.max(1, Math.min(65535, Math.floor(n)));
  return JSON.stringify({ type: 'resize', cols: clamp(cols), rows: clamp(rows) } satisfies TerminalClientMessage);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseControl(v: Record<string, unknown>): ServerControl | null {
  switch (v.type) {
    case 'attached':
      return {
        type: 'attached',
        session: typeof v.session === 'string' ? v.session : 'main',
        new: v.new === true,
        mode: MODES.find((m) => m === v.mode) ?? 'interactive',
        replay_bytes: typeof v.replay_bytes === 'number' ? v.replay_bytes : 0,
      };
    case 'exit':
      return { type: 'exit', code: typeof v.code === 'number' ? v.code : -1 };
    case 'error':
      return {
        type: 'error',
        code: typeof v.code === 'string' ? v.code : 'error',
        message: typeof v.message === 'string' ? v.message : '',
      };
    case 'takeover':
      return { type: 'takeover', active: v.active === true };
    case 'notice':
      return { type: 'notice', message: typeof v.message === 'string' ? v.message : '' };
    default:
      return null;
  }
}

/** Decodes one WebSocket message (`ArrayBuffer`/`Uint8Array` for binary, string for text). */
export function decodeFrame(data: ArrayBuffer | Uint8Array | string): DecodedFrame {
  if (typeof data !== 'string') {
    return { kind: 'output', bytes: data instanceof Uint8Array ? data : new Uint8Array(data) };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return { kind: 'unknown', raw: data };
  }
  if (!isRecord(parsed)) return { kind: 'unknown', raw: data };
  if (parsed.type === 'output' && typeof parsed.data === 'string') {
    return { kind: 'output', bytes: encoder.encode(parsed.data) };
  }
  const msg = parseControl(parsed);
  return msg ? { kind: 'control', msg } : { kind: 'unknown', raw: data };
}

export interface TerminalUrlParams {
  /** One-time ticket from `POST /api/session/ticket`; never a token (refused in URLs). */
  ticket: string;
  session: string;
  mode: TerminalMode;
  workshopId?: string;
  seat?: number;
}

/** Builds the gateway URL for a terminal session on the same origin as `base` (an http(s) URL). */
export function terminalUrl(base: string, p: TerminalUrlParams): string {
  const url = new URL('/api/session/terminal', base);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.searchParams.set('ticket', p.ticket);
  url.searchParams.set('session', p.session);
  url.searchParams.set('mode', p.mode);
  if (p.workshopId !== undefined) url.searchParams.set('workshop_id', p.workshopId);
  if (p.seat !== undefined) url.searchParams.set('seat', String(p.seat));
  return url.toString();
}

/** Session names the daemon accepts: `[A-Za-z0-9_-]{1,32}`. */
export function isValidSessionName(name: string): boolean {
  return /^[A-Za-z0-9_-]{1,32}$/.test(name);
}
