// Editor tabs (unsaved markers, close buttons, keyboard switching) above the lazily loaded Monaco.

import { lazy, Suspense } from 'react';
import type { Editors } from '../workspace/useEditors';

const MonacoEditor = lazy(() => import('../editor/MonacoEditor').then((m) => ({ default: m.MonacoEditor })));

function baseName(path: string): string {
  return path.split('/').pop() || path;
}

export function EditorArea({ editors }: { editors: Editors }) {
  const { tabs, active } = editors;
  const current = tabs.find((t) => t.path === active) ?? null;
  const doc = current ? editors.docs.get(current.path) : undefined;
  const openPaths = tabs.map((t) => t.path);

  return (
    <section className="editor-area" aria-label="Editor">
      <div className="tabbar" role="tablist" aria-label="Open files">
        {tabs.map((t, i) => {
          const dirty = t.state === 'dirty' || t.state === 'saving' || t.state === 'error';
          return (
            <div
              key={t.path}
              role="tab"
              tabIndex={t.path === active ? 0 : -1}
              aria-selected={t.path === active}
              title={t.path + (dirty ? ' (unsaved)' : '')}
              data-state={t.state}
              onClick={() => editors.setActive(t.path)}
              onAuxClick={(e) => e.button === 1 && void editors.close(t.path)}
              onKeyDown={(e) => {
                if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
                  const next = tabs[(i + (e.key === 'ArrowRight' ? 1 : tabs.length - 1)) % tabs.length];
                  editors.setActive(next.path);
                  (e.currentTarget.parentElement?.children[tabs.indexOf(next)] as HTMLElement | undefined)?.focus();
                  e.preventDefault();
                } else if (e.key === 'Delete') {
                  void editors.close(t.path);
                }
              }}
            >
              <span>{baseName(t.path)}</span>
              {dirty && <span className="dirty-dot" role="img" aria-label="unsaved changes" />}
              <button
                type="button"
                className="tab-close"
                tabIndex={-1}
                aria-label={`Close ${baseName(t.path)}`}
                onClick={(e) => {
                  e.stopPropagation();
                  void editors.close(t.path);
                }}
              >
                ×
              </button>
            </div>
          );
        })}
      </div>
      {current?.error && (
        <div className="alert error small" role="alert" style={{ borderRadius: 0 }}>
          {current.error}
        </div>
      )}
      {!current ? (
        <div className="editor-empty">
          <div>
            <p style={{ margin: '0 0 6px', fontWeight: 600 }}>No file open</p>
            <p style={{ margin: 0 }}>
              Pick a file in the tree, or create one. Changes save automatically; <kbd>Ctrl</kbd>+<kbd>S</kbd> saves now.
            </p>
          </div>
        </div>
      ) : current.loading ? (
        <div className="editor-empty" role="status">
          <span>
            <span className="spinner" aria-hidden="true" /> Opening {baseName(current.path)}…
          </span>
        </div>
      ) : current.binary ? (
        <div className="editor-empty">This is a binary file; it cannot be edited here.</div>
      ) : doc ? (
        <Suspense
          fallback={
            <div className="editor-empty" role="status">
              <span>
                <span className="spinner" aria-hidden="true" /> Loading editor…
              </span>
            </div>
          }
        >
          <MonacoEditor
            path={current.path}
            doc={doc}
            openPaths={openPaths}
            focusSeq={editors.focusSeq}
            onChange={editors.change}
            onSave={(p) => void editors.save(p)}
          />
        </Suspense>
      ) : null}
    </section>
  );
}
