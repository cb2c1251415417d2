// The bar on top of every page: brand, page-specific content, theme toggle.

import type { ReactNode } from 'react';
import { setTheme, useTheme } from '../lib/theme';
import { Icon } from './Icon';

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
      <Icon name={theme === 'dark' ? 'sun' : 'moon'} />
    </button>
  );
}

export function TopBar({ children, right, home = '/' }: { children?: ReactNode; right?: ReactNode; home?: string }) {
  return (
    <header className="topbar">
      <a className="brand" href={home}>
        <span className="brand-mark" aria-hidden="true">
          <Icon name="terminal" size={15} />
        </span>
        ClaraTeach
      </a>
      {children}
      <span className="spacer" />
      {right}
      <ThemeToggle />
    </header>
  );
}
