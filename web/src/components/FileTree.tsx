// The file explorer: an ARIA tree (arrow keys move, Right/Left open and close folders, Enter
// opens, F2 renames, Delete deletes), with inline inputs for new files, folders and renames.

import { useMemo, useRef, useState, type KeyboardEvent, type ReactElement } from 'react';
import type { FileInfo } from '../api/types';
import { describeError } from '../api/client';
import { joinPath, parentOf, type FileTreeState } from '../workspace/useFileTree';
import { ConfirmDialog } from './ConfirmDialog';
import { Icon } from './Icon';

interface Row {
  info: FileInfo;
  depth: number;
}

type Editing = { kind: 'new-file' | 'new-dir'; parent: string } | { kind: 'rename'; path: string; name: string };

export interface FileTreeProps {
  tree: FileTreeState;
  onOpen: (path: string, focus?: boolean) => void;
  onRenamed: (from: string, to: string) => void;
  onDeleted: (path: string) => void;
}

function icon(info: FileInfo, open: boolean) {
  return <Icon name={info.is_directory ? (open ? 'folderOpen' : 'folder') : 'file'} size={15} />;
}

function validName(name: string): string | null {
  if (!name.trim()) return 'Enter a name.';
  if (name.includes('/') || name === '.' || name === '..') return 'Names cannot contain "/" or be "." or "..".';
  return null;
}

export function FileTree({ tree, onOpen, onRenamed, onDeleted }: FileTreeProps) {
  const [selected, setSelected] = useState<string | null>(null);
  const [editing, setEditing] = useState<Editing | null>(null);
  const [draft, setDraft] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [confirmDelete, setConfirmDelete] = useState<FileInfo | null>(null);
  const list = useRef<HTMLUListElement>(null);

  const rows = useMemo(() => {
    const out: Row[] = [];
    const walk = (dir: string, depth: number) => {
      for (const info of tree.dirs.get(dir) ?? []) {
        out.push({ info, depth });
        if (info.is_directory && tree.expanded.has(info.path)) walk(info.path, depth + 1);
      }
    };
    walk('/', 1);
    return out;
  }, [tree.dirs, tree.expanded]);

  const selectedInfo = rows.find((r) => r.info.path === selected)?.info ?? null;
  const targetDir = selectedInfo ? (selectedInfo.is_directory ? selectedInfo.path : parentOf(selectedInfo.path)) : '/';
  const focusIndex = Math.max(0, rows.findIndex((r) => r.info.path === selected));

  function focusRow(i: number) {
    const r = rows[i];
    if (!r) return;
    setSelected(r.info.path);
    requestAnimationFrame(() =>
      list.current?.querySelector<HTMLElement>(`[data-path="${CSS.escape(r.info.path)}"]`)?.focus(),
    );
  }

  function startNew(kind: 'new-file' | 'new-dir') {
    if (targetDir !== '/') tree.toggle(targetDir, true);
    setEditing({ kind, parent: targetDir });
    setDraft('');
    setError(null);
  }

  async function commit() {
    if (!editing) return;
    const name = draft.trim();
    if (editing.kind === 'rename' && name === editing.name) {
      setEditing(null);
      return;
    }
    const problem = validName(name);
    if (problem) {
      setError(problem);
      return;
    }
    try {
      if (editing.kind === 'rename') {
        const to = joinPath(parentOf(editing.path), name);
        await tree.rename(editing.path, to);
        onRenamed(editing.path, to);
        setSelected(to);
      } else {
        const path = joinPath(editing.parent, name);
        if (editing.kind === 'new-file') {
          await tree.createFile(path);
          onOpen(path, true);
        } else {
          await tree.createDir(path);
        }
        setSelected(path);
      }
      setEditing(null);
      setError(null);
    } catch (err) {
      setError(describeError(err));
    }
  }

  function onKey(e: KeyboardEvent, i: number, info: FileInfo) {
    const open = tree.expanded.has(info.path);
    switch (e.key) {
      case 'ArrowDown':
        focusRow(Math.min(rows.length - 1, i + 1));
        break;
      case 'ArrowUp':
        focusRow(Math.max(0, i - 1));
        break;
      case 'Home':
        focusRow(0);
        break;
      case 'End':
        focusRow(rows.length - 1);
        break;
      case 'ArrowRight':
        if (info.is_directory && !open) tree.toggle(info.path, true);
        else if (info.is_directory) focusRow(i + 1);
        break;
      case 'ArrowLeft':
        if (info.is_directory && open) tree.toggle(info.path, false);
        else {
          const parent = parentOf(info.path);
          const pi = rows.findIndex((r) => r.info.path === parent);
          if (pi >= 0) focusRow(pi);
        }
        break;
      case 'Enter':
      case ' ':
        if (info.is_directory) tree.toggle(info.path);
        else onOpen(info.path, true);
        break;
      case 'F2':
        setEditing({ kind: 'rename', path: info.path, name: info.name });
        setDraft(info.name);
        break;
      case 'Delete':
        setConfirmDelete(info);
        break;
      default:
        return;
    }
    e.preventDefault();
  }

  const input = (depth: number) => (
    <li role="none" key="__editing">
      <div className="tree-row" style={{ paddingLeft: depth * 12 }}>
        <span className="twisty" />
        <input
          className="input tree-input"
          aria-label={
            editing?.kind === 'rename' ? 'New name' : editing?.kind === 'new-dir' ? 'New folder name' : 'New file name'
          }
          autoFocus
          value={draft}
          onChange={(e) => setDraft(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter') void commit();
            if (e.key === 'Escape') {
              setEditing(null);
              setError(null);
            }
          }}
          onBlur={() => {
            if (!draft.trim()) setEditing(null);
          }}
        />
      </div>
    </li>
  );

  const items: ReactElement[] = [];
  if (editing && editing.kind !== 'rename' && editing.parent === '/') items.push(input(1));
  rows.forEach((r, i) => {
    const { info, depth } = r;
    const open = tree.expanded.has(info.path);
    if (editing?.kind === 'rename' && editing.path === info.path) {
      items.push(input(depth));
      return;
    }
    items.push(
      <li
        key={info.path}
        role="treeitem"
        data-path={info.path}
        aria-level={depth}
        aria-selected={selected === info.path}
        aria-expanded={info.is_directory ? open : undefined}
        tabIndex={i === focusIndex ? 0 : -1}
        onKeyDown={(e) => onKey(e, i, info)}
        onFocus={() => setSelected(info.path)}
      >
        <div
          className={`tree-row${selected === info.path ? ' selected' : ''}`}
          style={{ paddingLeft: depth * 12 - 8 }}
          onClick={() => {
            setSelected(info.path);
            if (info.is_directory) tree.toggle(info.path);
            else onOpen(info.path);
          }}
          title={info.path}
        >
          <span className="twisty" aria-hidden="true">
            {info.is_directory && <Icon name={open ? 'chevronDown' : 'chevronRight'} size={12} />}
          </span>
          <span className="icon" aria-hidden="true">
            {icon(info, open)}
          </span>
          <span className="name">{info.name}</span>
        </div>
      </li>,
    );
    if (editing && editing.kind !== 'rename' && info.is_directory && open && editing.parent === info.path) {
      items.push(input(depth + 1));
    }
  });

  return (
    <>
      <div className="panel-head">
        <span>Files</span>
        <span className="spacer" />
        <button type="button" className="btn ghost icon" onClick={() => startNew('new-file')} aria-label="New file" title="New file">
          <Icon name="filePlus" />
        </button>
        <button type="button" className="btn ghost icon" onClick={() => startNew('new-dir')} aria-label="New folder" title="New folder">
          <Icon name="folderPlus" />
        </button>
        <button
          type="button"
          className="btn ghost icon"
          disabled={!selectedInfo}
          onClick={() => selectedInfo && (setEditing({ kind: 'rename', path: selectedInfo.path, name: selectedInfo.name }), setDraft(selectedInfo.name))}
          aria-label="Rename selected"
          title="Rename (F2)"
        >
          <Icon name="pencil" />
        </button>
        <button
          type="button"
          className="btn ghost icon"
          disabled={!selectedInfo}
          onClick={() => selectedInfo && setConfirmDelete(selectedInfo)}
          aria-label="Delete selected"
          title="Delete (Del)"
        >
          <Icon name="trash" />
        </button>
        <button type="button" className="btn ghost icon" onClick={() => tree.refresh()} aria-label="Refresh files" title="Refresh">
          <Icon name="refresh" />
        </button>
      </div>
      {(error ?? tree.error) && (
        <div className="alert error small" role="alert" style={{ margin: 8 }}>
          {error ?? tree.error}
        </div>
      )}
      <ul className="tree" role="tree" aria-label="Workspace files" ref={list}>
        {items}
        {rows.length === 0 && !editing && tree.dirs.has('/') && (
          <li role="none" className="tree-empty">
            No files yet. Create one with the new-file button or in the terminal.
          </li>
        )}
      </ul>
      <ConfirmDialog
        open={confirmDelete !== null}
        title={`Delete ${confirmDelete?.is_directory ? 'folder' : 'file'}?`}
        confirmLabel="Delete"
        danger
        onCancel={() => setConfirmDelete(null)}
        onConfirm={() => {
          const target = confirmDelete;
          setConfirmDelete(null);
          if (!target) return;
          tree.remove(target.path).then(
            () => {
              onDeleted(target.path);
              setSelected(null);
            },
            (err: unknown) => setError(describeError(err)),
          );
        }}
      >
        <p style={{ margin: 0 }}>
          <code>{confirmDelete?.path}</code>
          {confirmDelete?.is_directory ? ' and everything in it' : ''} will be deleted. This cannot be undone.
        </p>
      </ConfirmDialog>
    </>
  );
}
