// A template's README as blocks for the learner's instructions panel. The README is written by
// an instructor but shown on the control plane's origin, so it is never HTML: this reads a
// small Markdown subset (headings, fenced code, bullet lists, paragraphs) into plain data that
// React renders as text. Anything else stays text as written.

export type ReadmeBlock =
  | { kind: 'heading'; level: 1 | 2 | 3; text: string }
  | { kind: 'code'; text: string }
  | { kind: 'list'; items: string[] }
  | { kind: 'para'; text: string };

export function parseReadme(src: string): ReadmeBlock[] {
  const out: ReadmeBlock[] = [];
  const lines = src.replace(/\r\n?/g, '\n').split('\n');
  let para: string[] = [];
  let list: string[] | null = null;
  const flush = () => {
    if (para.length) out.push({ kind: 'para', text: para.join(' ') });
    para = [];
    if (list) out.push({ kind: 'list', items: list });
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = /^\s*(```|~~~)/.exec(line);
    if (fence) {
      flush();
      const body: string[] = [];
      for (i++; i < lines.length && !lines[i].trimStart().startsWith(fence[1]); i++) body.push(lines[i]);
      out.push({ kind: 'code', text: body.join('\n') });
      continue;
    }
    const h = /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line);
    if (h) {
      flush();
      out.push({ kind: 'heading', level: Math.min(h[1].length, 3) as 1 | 2 | 3, text: h[2] });
      continue;
    }
    const item = /^\s*(?:[-*+]|\d+[.)])\s+(.*)$/.exec(line);
    if (item) {
      if (para.length) {
        out.push({ kind: 'para', text: para.join(' ') });
        para = [];
      }
      (list ??= []).push(item[1]);
      continue;
    }
    if (line.trim() === '') {
      flush();
      continue;
    }
    if (list) {
      // A continuation line of the last item.
      list[list.length - 1] += ` ${line.trim()}`;
      continue;
    }
    para.push(line.trim());
  }
  flush();
  return out;
}
