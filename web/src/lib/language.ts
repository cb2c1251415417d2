// Monaco language id from a file name.

const BY_EXT: Record<string, string> = {
  py: 'python', js: 'javascript', mjs: 'javascript', cjs: 'javascript', jsx: 'javascript',
  ts: 'typescript', tsx: 'typescript', json: 'json', md: 'markdown', markdown: 'markdown',
  html: 'html', htm: 'html', css: 'css', scss: 'scss', less: 'less', sh: 'shell', bash: 'shell',
  zsh: 'shell', rs: 'rust', go: 'go', java: 'java', kt: 'kotlin', c: 'c', h: 'c', cc: 'cpp',
  cpp: 'cpp', hpp: 'cpp', cs: 'csharp', rb: 'ruby', php: 'php', sql: 'sql', yaml: 'yaml',
  yml: 'yaml', toml: 'ini', ini: 'ini', xml: 'xml', svg: 'xml', swift: 'swift', r: 'r', lua: 'lua',
  pl: 'perl', dockerfile: 'dockerfile', graphql: 'graphql', ex: 'elixir', exs: 'elixir',
  scala: 'scala', dart: 'dart', txt: 'plaintext',
};

const BY_NAME: Record<string, string> = {
  dockerfile: 'dockerfile', '.bashrc': 'shell', '.profile': 'shell',
};

export function languageForPath(path: string): string {
  const name = path.split('/').pop()?.toLowerCase() ?? '';
  if (BY_NAME[name]) return BY_NAME[name];
  const dot = name.lastIndexOf('.');
  if (dot < 0) return 'plaintext';
  return BY_EXT[name.slice(dot + 1)] ?? 'plaintext';
}
