// The code editor: Monaco loaded lazily on first use, one model per open file (so undo history
// and cursor survive tab switches), language from the extension, theme from the page.

import { useEffect, useRef, useState } from 'react';
import type * as Monaco from 'monaco-editor';
import { languageForPath } from '../lib/language';
import { useTheme } from '../lib/theme';
import type { EditorDoc } from '../workspace/useEditors';

type MonacoNs = typeof Monaco;
let loading: Promise<MonacoNs> | null = null;
function loadMonaco(): Promise<MonacoNs> {
  loading ??= import('./monaco').then((m) => m.monaco as unknown as MonacoNs);
  return loading;
}

export interface MonacoEditorProps {
  path: string;
  doc: EditorDoc;
  openPaths: string[];
  /** Focus the editor whenever this changes. */
  focusSeq: number;
  onChange: (path: string, content: string) => void;
  onSave: (path: string) => void;
}

export function MonacoEditor(props: MonacoEditorProps) {
  const host = useRef<HTMLDivElement>(null);
  const [ns, setNs] = useState<MonacoNs | null>(null);
  const [failed, setFailed] = useState<string | null>(null);
  const editor = useRef<Monaco.editor.IStandaloneCodeEditor | null>(null);
  const models = useRef(new Map<string, { model: Monaco.editor.ITextModel; version: number }>());
  const latest = useRef(props);
  latest.current = props;
  const theme = useTheme();

  useEffect(() => {
    let live = true;
    loadMonaco().then(
      (m) => live && setNs(m),
      (e: unknown) => live && setFailed(e instanceof Error ? e.message : 'The editor failed to load.'),
    );
    return () => {
      live = false;
    };
  }, []);

  useEffect(() => {
    if (!ns || !host.current) return;
    const ed = ns.editor.create(host.current, {
      automaticLayout: true,
      minimap: { enabled: false },
      fontFamily: '"JetBrains Mono", "Fira Code", ui-monospace, SFMono-Regular, Menlo, Consolas, monospace',
      fontSize: 14,
      scrollBeyondLastLine: false,
      tabSize: 4,
      renderWhitespace: 'selection',
      ariaLabel: 'Code editor',
    });
    ed.addCommand(ns.KeyMod.CtrlCmd | ns.KeyCode.KeyS, () => {
      const model = ed.getModel();
      const entry = [...models.current.entries()].find(([, v]) => v.model === model);
      if (entry) latest.current.onSave(entry[0]);
    });
    const sub = ed.onDidChangeModelContent(() => {
      const model = ed.getModel();
      const entry = [...models.current.entries()].find(([, v]) => v.model === model);
      if (entry && !applying.current) latest.current.onChange(entry[0], model?.getValue() ?? '');
    });
    editor.current = ed;
    return () => {
      sub.dispose();
      ed.dispose();
      models.current.forEach((v) => v.model.dispose());
      models.current.clear();
      editor.current = null;
    };
  }, [ns]);

  const applying = useRef(false);

  // Show the active file; create or refresh its model.
  useEffect(() => {
    const ed = editor.current;
    if (!ns || !ed) return;
    let entry = models.current.get(props.path);
    if (!entry) {
      const uri = ns.Uri.from({ scheme: 'file', path: props.path });
      const model = ns.editor.getModel(uri) ?? ns.editor.createModel(props.doc.content, languageForPath(props.path), uri);
      entry = { model, version: props.doc.version };
      models.current.set(props.path, entry);
    } else if (entry.version !== props.doc.version) {
      entry.version = props.doc.version;
      if (entry.model.getValue() !== props.doc.content) {
        applying.current = true;
        entry.model.pushEditOperations([], [{ range: entry.model.getFullModelRange(), text: props.doc.content }], () => null);
        applying.current = false;
      }
    }
    if (ed.getModel() !== entry.model) ed.setModel(entry.model);
  }, [ns, props.path, props.doc, props.doc.version]);

  useEffect(() => {
    if (props.focusSeq > 0) editor.current?.focus();
  }, [ns, props.focusSeq]);

  // Drop models of closed tabs.
  useEffect(() => {
    for (const [path, entry] of models.current) {
      if (!props.openPaths.includes(path)) {
        entry.model.dispose();
        models.current.delete(path);
      }
    }
  }, [props.openPaths]);

  useEffect(() => {
    if (!ns) return;
    // The page's surface colours, so the editor does not sit in a differently tinted box.
    ns.editor.defineTheme('clara-dark', { base: 'vs-dark', inherit: true, rules: [], colors: { 'editor.background': '#141720' } });
    ns.editor.defineTheme('clara-light', { base: 'vs', inherit: true, rules: [], colors: { 'editor.background': '#ffffff' } });
    ns.editor.setTheme(theme === 'dark' ? 'clara-dark' : 'clara-light');
  }, [ns, theme]);

  if (failed) return <div className="editor-empty">{failed}</div>;
  return (
    <div className="editor-host" data-testid="monaco-host">
      <div ref={host} style={{ position: 'absolute', inset: 0 }} />
      {!ns && (
        <div className="editor-empty" role="status" style={{ position: 'absolute', inset: 0 }}>
          <span>
            <span className="spinner" aria-hidden="true" /> Loading editor…
          </span>
        </div>
      )}
    </div>
  );
}
