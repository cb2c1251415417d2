// The learner's announcement banners (newest first). "Hide" hides one in this tab only; the
// instructor takes banners down for everyone.

import { useState } from 'react';
import type { Announcement } from '../api/types';

export function LearnerBanner({ announcements }: { announcements: Announcement[] }) {
  const [hidden, setHidden] = useState<Set<string>>(() => new Set());
  const shown = announcements.filter((a) => !hidden.has(a.id)).reverse();
  if (shown.length === 0) return null;
  return (
    <div className="announcements" role="status" aria-live="polite" data-testid="announcement-banner">
      {shown.map((a) => (
        <div key={a.id} className="alert info small announcement" style={{ borderRadius: 0 }}>
          <strong>Instructor:</strong> <span data-testid="announcement-text">{a.message}</span>{' '}
          <button type="button" className="btn ghost small" onClick={() => setHidden((h) => new Set(h).add(a.id))}>
            Hide
          </button>
        </div>
      ))}
    </div>
  );
}
