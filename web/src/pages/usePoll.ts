// Polls while the tab is visible; the callback gets an AbortSignal so a slow response never
// lands after the component went away.

import { useEffect, useRef } from 'react';

export function usePoll(fn: (signal: AbortSignal) => Promise<void>, intervalMs: number, deps: unknown[]): void {
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => {
    const ctl = new AbortController();
    let timer: ReturnType<typeof setTimeout> | null = null;
    let running = false;
    const tick = async () => {
      if (running || ctl.signal.aborted) return;
      running = true;
      try {
        if (document.visibilityState !== 'hidden') await latest.current(ctl.signal);
      } catch {
        // The callback reports its own errors.
      } finally {
        running = false;
        if (!ctl.signal.aborted) timer = setTimeout(() => void tick(), intervalMs);
      }
    };
    void tick();
    const onVisible = () => {
      if (document.visibilityState === 'visible') {
        if (timer !== null) clearTimeout(timer);
        void tick();
      }
    };
    document.addEventListener('visibilitychange', onVisible);
    return () => {
      ctl.abort();
      if (timer !== null) clearTimeout(timer);
      document.removeEventListener('visibilitychange', onVisible);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [intervalMs, ...deps]);
}
