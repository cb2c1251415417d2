// A draggable, keyboard-operable separator between two panes (WAI-ARIA window splitter).

import { useCallback, useRef } from 'react';

export interface SplitterProps {
  orientation: 'vertical' | 'horizontal';
  /** Size in px of the pane this splitter controls. */
  value: number;
  min: number;
  max: number;
  onChange: (v: number) => void;
  /** +1 when moving right/down grows the pane, -1 when it shrinks it. */
  direction?: 1 | -1;
  label: string;
}

export function Splitter({ orientation, value, min, max, onChange, direction = 1, label }: SplitterProps) {
  const start = useRef<{ pos: number; value: number } | null>(null);
  const clamp = useCallback((v: number) => Math.round(Math.max(min, Math.min(max, v))), [min, max]);
  const vertical = orientation === 'vertical';
  return (
    <div
      className={`splitter ${vertical ? 'v' : 'h'}`}
      role="separator"
      tabIndex={0}
      aria-label={label}
      aria-orientation={orientation}
      aria-valuenow={value}
      aria-valuemin={min}
      aria-valuemax={max}
      onPointerDown={(e) => {
        e.preventDefault();
        (e.target as HTMLElement).setPointerCapture(e.pointerId);
        start.current = { pos: vertical ? e.clientX : e.clientY, value };
      }}
      onPointerMove={(e) => {
        if (!start.current) return;
        const delta = (vertical ? e.clientX : e.clientY) - start.current.pos;
        onChange(clamp(start.current.value + direction * delta));
      }}
      onPointerUp={() => (start.current = null)}
      onKeyDown={(e) => {
        const step = e.shiftKey ? 64 : 16;
        const keys = vertical ? ['ArrowLeft', 'ArrowRight'] : ['ArrowUp', 'ArrowDown'];
        if (e.key === keys[0]) onChange(clamp(value - direction * step));
        else if (e.key === keys[1]) onChange(clamp(value + direction * step));
        else if (e.key === 'Home') onChange(min);
        else if (e.key === 'End') onChange(max);
        else return;
        e.preventDefault();
      }}
    />
  );
}
