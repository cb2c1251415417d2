// The learner's live event stream (`GET /api/session/events`, WebSocket): announcements and
// the spotlight, each a full snapshot at connect and on every change, so a page reload or a
// reconnect shows the current state at once. Reconnects with backoff while the seat lives.

import { useEffect, useState } from 'react';
import type { Announcement, LearnerEvent, Spotlight } from '../api/types';
import { Backoff } from '../lib/backoff';
import type { SeatSession } from './seatSession';

export interface LearnerLive {
  announcements: Announcement[];
  spotlight: Spotlight | null;
}

/** Applies one event frame to the state (unknown frames change nothing). */
export function applyEvent(state: LearnerLive, raw: string): LearnerLive {
  let e: LearnerEvent;
  try {
    e = JSON.parse(raw) as LearnerEvent;
  } catch {
    return state;
  }
  if (e.type === 'announcements' && Array.isArray(e.announcements)) return { ...state, announcements: e.announcements };
  if (e.type === 'spotlight') return { ...state, spotlight: e.spotlight ?? null };
  return state;
}

export function useLearnerEvents(seat: SeatSession): LearnerLive {
  const [live, setLive] = useState<LearnerLive>({ announcements: [], spotlight: null });
  useEffect(() => {
    let closed = false;
    let ws: WebSocket | null = null;
    const backoff = new Backoff();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const connect = async () => {
      if (closed || seat.ended) return;
      try {
        const url = await seat.wsUrl('/api/session/events');
        if (closed) return;
        ws = new WebSocket(url);
        ws.onopen = () => {
          backoff.reset();
        };
        ws.onmessage = (m) => {
          if (typeof m.data === 'string') setLive((s) => applyEvent(s, m.data as string));
        };
        ws.onclose = () => {
          ws = null;
          if (!closed) timer = setTimeout(() => void connect(), backoff.next());
        };
      } catch {
        if (!closed) timer = setTimeout(() => void connect(), backoff.next());
      }
    };
    void connect();
    return () => {
      closed = true;
      clearTimeout(timer);
      ws?.close();
    };
  }, [seat]);
  return live;
}
