// The learner's instructions: the README of the workshop's template, beside the editor. Open by
// default the first time a seat is opened, closable, reopened from the top bar. Rendered as text
// through parseReadme (never as HTML).

import { useMemo } from 'react';
import { parseReadme } from '../workspace/readme';

export function ReadmePanel({ readme, template, onClose }: { readme: string; template: string | null; onClose: () => void }) {
  const blocks = useMemo(() => parseReadme(readme), [readme]);
  return (
    <aside className="readme-panel" aria-label="Workshop instructions" data-testid="readme-panel">
      <div className="panel-head">
        <span>Instructions{template ? ` · ${template}` : ''}</span>
        <span className="spacer" />
        <button type="button" className="btn ghost small" onClick={onClose} aria-label="Close the instructions">
          ×
        </button>
      </div>
      <div className="readme-body">
        {blocks.map((b, i) => {
          switch (b.kind) {
            case 'heading':
              return b.level === 1 ? <h2 key={i}>{b.text}</h2> : b.level === 2 ? <h3 key={i}>{b.text}</h3> : <h4 key={i}>{b.text}</h4>;
            case 'code':
              return (
                <pre key={i} className="mono">
                  {b.text}
                </pre>
              );
            case 'list':
              return (
                <ul key={i}>
                  {b.items.map((t, j) => (
                    <li key={j}>{t}</li>
                  ))}
                </ul>
              );
            default:
              return <p key={i}>{b.text}</p>;
          }
        })}
      </div>
    </aside>
  );
}
