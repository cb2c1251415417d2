// Open editor tabs: loading file contents, debounced autosave with unsaved markers, Ctrl/Cmd-S,
// and following the file system (reload untouched tabs changed on disk, follow renames/deletes).

import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { api, describeError } from '../api/client';
import { Autosave, type SaveState } from '../lib/autosave';
import type { SeatSession } from './seatSession';
import type { ChangeEvent } from './fileWatcher';

export interface EditorTab {
  path: string;
  state: SaveState;
  binary: boolean;
  loading: boolean;
  error: string | null;
}

export interface EditorDoc {
  content: string;
  /** Bumped when the content is replaced from disk, so the editor model is reset. */
  version: number;
}

function under(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

export function useEditors(seat: SeatSession) {
  const [tabs, setTabs] = useState<EditorTab[]>([]);
  const [active, setActive] = useState<string | null>(null);
  /** Bumped when the editor should take the keyboard focus (file opened with Enter, new file). */
  const [focusSeq, setFocusSeq] = useState(0);
  const docs = useRef(new Map<string, EditorDoc>());
  const tabsRef = useRef(tabs);
  tabsRef.current = tabs;

  const patch = useCallback((path: string, p: Partial<EditorTab>) => {
    setTabs((prev) => prev.map((t) => (t.path === path ? { ...t, ...p } : t)));
  }, []);

  const autosave = useMemo(
    () =>
      new Autosave({
        delayMs: 500,
        save: (path, content) => seat.call((t) => api.writeFile(t, path, content)).then(() => undefined),
        onState: (path, state, err) =>
          patch(path, { state, error: state === 'error' ? `Not saved: ${describeError(err)}` : null }),
      }),
    [seat, patch],
  );

  useEffect(() => {
    const save = () => void autosave.flushAll();
    window.addEventListener('pagehide', save);
    return () => window.removeEventListener('pagehide', save);
  }, [autosave]);

  const open = useCallback(
    async (path: string, focus = false) => {
      setActive(path);
      if (focus) setFocusSeq((n) => n + 1);
      if (tabsRef.current.some((t) => t.path === path)) return;
      setTabs((prev) => [...prev, { path, state: 'clean', binary: false, loading: true, error: null }]);
      try {
        const res = await seat.call((t) => api.readFile(t, path));
        const binary = res.encoding === 'base64';
        docs.current.set(path, { content: binary ? '' : res.content, version: 1 });
        patch(path, { loading: false, binary });
      } catch (err) {
        patch(path, { loading: false, error: describeError(err) });
      }
    },
    [seat, patch],
  );

  const close = useCallback(
    async (path: string) => {
      await autosave.flush(path).catch(() => undefined);
      autosave.forget(path);
      docs.current.delete(path);
      setTabs((prev) => {
        const idx = prev.findIndex((t) => t.path === path);
        const next = prev.filter((t) => t.path !== path);
        setActive((a) => (a === path ? (next[Math.min(idx, next.length - 1)]?.path ?? null) : a));
        return next;
      });
    },
    [autosave],
  );

  const change = useCallback(
    (path: string, content: string) => {
      const doc = docs.current.get(path);
      if (doc) doc.content = content;
      autosave.change(path, content);
    },
    [autosave],
  );

  const save = useCallback((path: string) => autosave.flush(path), [autosave]);

  /**
   * Files changed on disk: reload tabs without local edits whose content differs; tabs whose file
   * was deleted get a notice (a rename shows up as delete + create and is followed separately).
   */
  const externalChange = useCallback(
    (events: ChangeEvent[]) => {
      const changed = new Set<string>();
      const removed: string[] = [];
      for (const e of events) {
        if (e.kind === 'deleted') removed.push(...e.paths);
        else e.paths.forEach((p) => changed.add(p));
      }
      const refreshAll = events.some((e) => e.paths.length === 0);
      for (const tab of tabsRef.current) {
        if (tab.binary || tab.loading || autosave.isDirty(tab.path)) continue;
        if (removed.some((p) => under(tab.path, p))) {
          // Give a rename's follow-up a moment before calling the file gone.
          setTimeout(() => {
            if (tabsRef.current.some((t) => t.path === tab.path)) {
              patch(tab.path, { error: 'This file was deleted. Typing in it saves it again.' });
            }
          }, 400);
          continue;
        }
        if (!refreshAll && !changed.has(tab.path)) continue;
        void seat
          .call((t) => api.readFile(t, tab.path))
          .then((res) => {
            const doc = docs.current.get(tab.path);
            if (!doc || autosave.isDirty(tab.path) || res.encoding === 'base64') return;
            if (res.content !== doc.content) {
              docs.current.set(tab.path, { content: res.content, version: doc.version + 1 });
            }
            patch(tab.path, { error: null });
          })
          .catch(() => undefined);
      }
    },
    [seat, autosave, patch],
  );

  const renamed = useCallback(
    (from: string, to: string) => {
      const moved = (p: string) => (under(p, from) ? to + p.slice(from.length) : p);
      for (const t of tabsRef.current) {
        if (!under(t.path, from)) continue;
        void autosave.flush(t.path).catch(() => undefined);
        autosave.forget(t.path);
        const doc = docs.current.get(t.path);
        docs.current.delete(t.path);
        if (doc) docs.current.set(moved(t.path), { ...doc, version: doc.version + 1 });
      }
      setTabs((prev) => prev.map((t) => ({ ...t, path: moved(t.path) })));
      setActive((a) => (a ? moved(a) : a));
    },
    [autosave],
  );

  const deleted = useCallback(
    (path: string) => {
      for (const t of tabsRef.current) {
        if (!under(t.path, path)) continue;
        autosave.forget(t.path);
        docs.current.delete(t.path);
      }
      setTabs((prev) => {
        const next = prev.filter((t) => !under(t.path, path));
        setActive((a) => (a && under(a, path) ? (next[0]?.path ?? null) : a));
        return next;
      });
    },
    [autosave],
  );

  return { tabs, active, setActive, focusSeq, docs: docs.current, open, close, change, save, externalChange, renamed, deleted };
}

export type Editors = ReturnType<typeof useEditors>;
