// Shared bits of the instructor pages: status badges and the export download.

import { api } from '../api/client';
import type { WorkshopStatus } from '../api/types';

export function statusTone(s: WorkshopStatus): string {
  switch (s) {
    case 'running':
      return 'ok';
    case 'provisioning':
    case 'stopping':
      return 'warn';
    case 'failed':
      return 'danger';
    case 'created':
      return 'accent';
    default:
      return '';
  }
}

/** Fetches the export with the bearer header and hands it to the browser as a download. */
export async function downloadExport(token: string, id: string, name: string): Promise<void> {
  const blob = await api.exportWorkshop(token, id);
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = `${name.replace(/[^\w.-]+/g, '_') || id}-${id}.tar.gz`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function relativeTime(iso: string | null, now: number): string {
  if (!iso) return 'never';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return 'unknown';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 5) return 'just now';
  if (s < 60) return `${s}s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ago`;
  return new Date(t).toLocaleDateString();
}
