// The bar on top of every page: brand, page-specific content, theme toggle.

import type { ReactNode } from 'react';
import { setTheme, useTheme } from '../lib/theme';

export function ThemeToggle() {
  const theme = useTheme();
  const next = theme === 'dark' ? 'light' : 'dark';
  return (
    <button
      type="button"
      className="btn ghost icon"
      onClick={() => setTheme(next)}
      aria-label={`Switch to ${next} theme`}
      title={`Switch to ${next} theme`}
    >
      <span aria-hidden="true">{theme === 'dark' ? '☀' : '☾'}</span>
    </button>
  );
}

export function TopBar({ children, home = '/' }: { children?: ReactNode; home?: string }) {
  return (
    <header className="topbar">
      <a className="brand" href={home}>
        <span className="brand-mark" aria-hidden="true">
          ›_
        </span>
        ClaraTeach
      </a>
      {children}
      <span className="spacer" />
      <ThemeToggle />
    </header>
  );
}
