// The instructor toolkit's calls (issue 10): broadcast files, checks in every seat, the audit,
// and what a learner sees of them (what a broadcast brought, whether they are watched).
// Types come from api/openapi.json through schema.gen.ts.

import { json } from './client';
import type { components } from './schema.gen';

type Schemas = components['schemas'];
export type BroadcastReport = Schemas['BroadcastReport'];
export type BroadcastFileResult = Schemas['BroadcastFileResult'];
export type BroadcastRequest = Schemas['BroadcastRequest'];
export type LearnerBroadcast = Schemas['LearnerBroadcast'];
export type CheckRun = Schemas['CheckRun'];
export type CheckResult = Schemas['CheckResult'];
export type ChecksResponse = Schemas['ChecksResponse'];
export type AuditEvent = Schemas['AuditEvent'];
export type Presence = Schemas['Presence'];

const ws = (id: string) => `/api/workshops/${encodeURIComponent(id)}`;

export const toolkit = {
  broadcast: (token: string, id: string, req: BroadcastRequest) =>
    json<BroadcastReport>(`${ws(id)}/broadcast`, { method: 'POST', token, body: req }),
  latestBroadcast: (token: string, id: string, signal?: AbortSignal) =>
    json<{ report: BroadcastReport | null }>(`${ws(id)}/broadcast`, { token, signal }).then((r) => r.report ?? null),
  runCheck: (token: string, id: string, req: { command?: string; timeout_s?: number; save?: boolean }) =>
    json<CheckRun>(`${ws(id)}/checks`, { method: 'POST', token, body: req }),
  checks: (token: string, id: string, signal?: AbortSignal) => json<ChecksResponse>(`${ws(id)}/checks`, { token, signal }),
  audit: (token: string, id: string, signal?: AbortSignal) =>
    json<{ events: AuditEvent[] }>(`${ws(id)}/audit`, { token, signal }).then((r) => r.events),
  myBroadcast: (token: string) => json<LearnerBroadcast>('/api/session/broadcast', { token }),
  presence: (token: string) => json<Presence>('/api/session/presence', { token }),
};

/** One line per file outcome, as the learner and the instructor read it. */
export function describeOutcome(f: BroadcastFileResult): string {
  switch (f.outcome) {
    case 'written':
      return `${f.path}: new version`;
    case 'merged':
      return `${f.path}: merged with your changes`;
    case 'conflicted':
      return `${f.path}: kept yours; the new version is ${f.new_path ?? `${f.path}.new`}`;
    default:
      return `${f.path}: not delivered (${f.error ?? 'error'})`;
  }
}

/** Pass/fail per seat of a check run, for the grid's cards. */
export function checkBySeat(run: CheckRun | null): Map<number, CheckResult> {
  return new Map((run?.results ?? []).map((r) => [r.seat, r]));
}
