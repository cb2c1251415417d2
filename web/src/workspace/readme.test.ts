import { describe, expect, it } from 'vitest';
import { parseReadme } from './readme';

describe('parseReadme', () => {
  it('reads headings, paragraphs, lists and fenced code', () => {
    const blocks = parseReadme(
      '# Claude workshop\n\nRun the CLI\nin the terminal.\n\n- one\n- two\n  more\n\n```sh\nclaude --version\n```\n### Next',
    );
    expect(blocks).toEqual([
      { kind: 'heading', level: 1, text: 'Claude workshop' },
      { kind: 'para', text: 'Run the CLI in the terminal.' },
      { kind: 'list', items: ['one', 'two more'] },
      { kind: 'code', text: 'claude --version' },
      { kind: 'heading', level: 3, text: 'Next' },
    ]);
  });

  it('keeps markup as text: HTML is never interpreted', () => {
    const blocks = parseReadme('<img src=x onerror=alert(1)>\n\n<script>alert(1)</script>');
    expect(blocks).toEqual([
      { kind: 'para', text: '<img src=x onerror=alert(1)>' },
      { kind: 'para', text: '<script>alert(1)</script>' },
    ]);
  });

  it('an unclosed fence runs to the end; CRLF is read as LF; empty is nothing', () => {
    expect(parseReadme('a\r\n```\nx\r\ny')).toEqual([
      { kind: 'para', text: 'a' },
      { kind: 'code', text: 'x\ny' },
    ]);
    expect(parseReadme('')).toEqual([]);
    expect(parseReadme('#### deep')).toEqual([{ kind: 'heading', level: 3, text: 'deep' }]);
  });
});
