// Replays one asciicast v2 recording in xterm.js: play/pause, speed, and a timeline to seek
// (seeking back redraws from the start, as a terminal cannot be un-written). Time advances on
// animation frames, so a hidden tab costs nothing.

import { useEffect, useRef, useState } from 'react';
import { Terminal } from '@xterm/xterm';
import '@xterm/xterm/css/xterm.css';
import { eventsUntil, formatTime, parseSize, type Cast } from './asciicast';

const SPEEDS = [0.5, 1, 2, 4, 8];

/** What the player shows, for the end-to-end tests (e2e build only). */
const castTexts = new Map<string, () => string>();
if (__CLARA_TEST_HOOKS__) (window as unknown as Record<string, unknown>).__claraCasts = castTexts;

export function CastPlayer({ cast, label }: { cast: Cast; label: string }) {
  const host = useRef<HTMLDivElement>(null);
  const term = useRef<Terminal | null>(null);
  const shown = useRef(0); // events written so far
  const pos = useRef(0);
  const [position, setPosition] = useState(0);
  const [playing, setPlaying] = useState(true);
  const [speed, setSpeed] = useState(1);

  useEffect(() => {
    const t = new Terminal({ cols: cast.header.width, rows: cast.header.height, disableStdin: true, convertEol: false, scrollback: 5000 });
    if (host.current) t.open(host.current);
    term.current = t;
    shown.current = 0;
    pos.current = 0;
    castTexts.set(label, () => {
      const b = t.buffer.active;
      const lines: string[] = [];
      for (let i = 0; i < b.length; i++) lines.push(b.getLine(i)?.translateToString(true) ?? '');
      return lines.join('\n');
    });
    return () => {
      castTexts.delete(label);
      t.dispose();
      term.current = null;
    };
  }, [cast, label]);

  /** Brings the terminal to time `t`. */
  const drawTo = (t: number) => {
    const xt = term.current;
    if (!xt) return;
    if (t < pos.current) {
      xt.reset();
      xt.resize(cast.header.width, cast.header.height);
      shown.current = 0;
    }
    const end = eventsUntil(cast, t);
    let out = '';
    for (let i = shown.current; i < end; i++) {
      const e = cast.events[i];
      if (e.code === 'o') out += e.data;
      else if (e.code === 'r') {
        if (out) xt.write(out);
        out = '';
        const size = parseSize(e.data);
        if (size) xt.resize(size.cols, size.rows);
      }
    }
    if (out) xt.write(out);
    shown.current = end;
    pos.current = t;
    setPosition(t);
  };

  useEffect(() => {
    if (!playing) return;
    let last = performance.now();
    let frame = requestAnimationFrame(function tick(now) {
      const next = Math.min(cast.duration, pos.current + ((now - last) / 1000) * speed);
      last = now;
      drawTo(next);
      if (next >= cast.duration) {
        setPlaying(false);
        return;
      }
      frame = requestAnimationFrame(tick);
    });
    return () => cancelAnimationFrame(frame);
    // drawTo only reads refs and the cast.
  }, [playing, speed, cast]);

  return (
    <div className="cast-player" data-testid="cast-player">
      <div className="row" style={{ gap: 8, marginBottom: 8 }}>
        <button
          type="button"
          className="btn small"
          data-testid="cast-play"
          onClick={() => {
            if (!playing && pos.current >= cast.duration) drawTo(0);
            setPlaying((p) => !p);
          }}
        >
          {playing ? 'Pause' : 'Play'}
        </button>
        <label className="small muted" htmlFor="cast-speed">
          Speed
        </label>
        <select id="cast-speed" className="input" style={{ width: 'auto', height: 30 }} value={speed} onChange={(e) => setSpeed(Number(e.target.value))}>
          {SPEEDS.map((s) => (
            <option key={s} value={s}>
              {s}×
            </option>
          ))}
        </select>
        <input
          type="range"
          aria-label="Timeline"
          data-testid="cast-timeline"
          min={0}
          max={cast.duration || 0}
          step={0.05}
          value={position}
          style={{ flex: 1 }}
          onChange={(e) => drawTo(Number(e.target.value))}
        />
        <span className="small mono" data-testid="cast-time">
          {formatTime(position)} / {formatTime(cast.duration)}
        </span>
      </div>
      <div ref={host} className="cast-screen" aria-label={label} />
    </div>
  );
}
