// Types for the ESM entry points of monaco-editor that ship without their own declarations.
declare module 'monaco-editor/esm/vs/editor/edcore.main' {
  export * from 'monaco-editor';
}
declare module 'monaco-editor/esm/vs/basic-languages/monaco.contribution';
declare module 'monaco-editor/esm/vs/language/json/monaco.contribution';
