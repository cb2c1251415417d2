// Directory listings the tree shows: loaded lazily per expanded directory, refreshed from watch
// events (coalesced), plus the create/rename/delete operations.

import { useCallback, useEffect, useRef, useState } from 'react';
import { ApiError, api } from '../api/client';
import type { FileInfo } from '../api/types';
import type { SeatSession } from './seatSession';

export function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

export function joinPath(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

function sortEntries(files: FileInfo[]): FileInfo[] {
  return [...files].sort((a, b) =>
    a.is_directory !== b.is_directory ? (a.is_directory ? -1 : 1) : a.name.localeCompare(b.name),
  );
}

export interface FileTreeState {
  dirs: Map<string, FileInfo[]>;
  expanded: Set<string>;
  error: string | null;
  toggle: (dir: string, open?: boolean) => void;
  refresh: (dirs?: Iterable<string>) => void;
  /** Drops listings of deleted directories so they are not listed again. */
  forget: (paths: string[]) => void;
  createFile: (path: string) => Promise<void>;
  createDir: (path: string) => Promise<void>;
  rename: (from: string, to: string) => Promise<void>;
  remove: (path: string) => Promise<void>;
}

export function useFileTree(seat: SeatSession): FileTreeState {
  const [dirs, setDirs] = useState<Map<string, FileInfo[]>>(() => new Map());
  const [expanded, setExpanded] = useState<Set<string>>(() => new Set(['/']));
  const [error, setError] = useState<string | null>(null);
  const expandedRef = useRef(expanded);
  expandedRef.current = expanded;
  const pending = useRef<Set<string>>(new Set());
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);

  const load = useCallback(
    async (dir: string) => {
      try {
        const files = await seat.call((t) => api.listFiles(t, dir));
        setDirs((prev) => new Map(prev).set(dir, sortEntries(files)));
        setError(null);
      } catch (err) {
        if (dir !== '/' && err instanceof ApiError && err.status === 404) {
          // The directory went away: drop it and its listing.
          setDirs((prev) => {
            const next = new Map(prev);
            next.delete(dir);
            return next;
          });
          setExpanded((prev) => {
            const next = new Set(prev);
            next.delete(dir);
            return next;
          });
          return;
        }
        if (!seat.ended) setError(err instanceof Error ? err.message : 'Could not list files.');
      }
    },
    [seat],
  );

  const refresh = useCallback(
    (which?: Iterable<string>) => {
      for (const d of which ?? expandedRef.current) {
        if (expandedRef.current.has(d)) pending.current.add(d);
      }
      if (timer.current !== null) return;
      timer.current = setTimeout(() => {
        timer.current = null;
        const batch = [...pending.current];
        pending.current.clear();
        batch.forEach((d) => void load(d));
      }, 120);
    },
    [load],
  );

  useEffect(() => {
    void load('/');
    return () => {
      if (timer.current !== null) clearTimeout(timer.current);
    };
  }, [load]);

  const toggle = useCallback(
    (dir: string, open?: boolean) => {
      const isOpen = expandedRef.current.has(dir);
      const willOpen = open ?? !isOpen;
      if (willOpen === isOpen) return;
      const next = new Set(expandedRef.current);
      if (willOpen) next.add(dir);
      else next.delete(dir);
      expandedRef.current = next;
      setExpanded(next);
      if (willOpen) void load(dir);
    },
    [load],
  );

  const after = useCallback(
    (paths: string[]) => {
      const parents = new Set(paths.map(parentOf));
      parents.forEach((p) => void load(p));
    },
    [load],
  );

  const forget = useCallback((paths: string[]) => {
    const gone = (d: string) => paths.some((p) => d === p || d.startsWith(`${p}/`));
    if (![...expandedRef.current].some(gone)) return;
    const next = new Set([...expandedRef.current].filter((d) => !gone(d)));
    expandedRef.current = next;
    setExpanded(next);
    setDirs((prev) => new Map([...prev].filter(([d]) => !gone(d))));
  }, []);

  return {
    dirs,
    expanded,
    error,
    toggle,
    refresh,
    forget,
    createFile: async (path) => {
      await seat.call((t) => api.writeFile(t, path, ''));
      after([path]);
    },
    createDir: async (path) => {
      await seat.call((t) => api.mkdir(t, path));
      after([path]);
    },
    rename: async (from, to) => {
      await seat.call((t) => api.renameFile(t, from, to));
      after([from, to]);
    },
    remove: async (path) => {
      await seat.call((t) => api.deleteFile(t, path));
      after([path]);
    },
  };
}
