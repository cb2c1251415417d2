// Applies the saved theme before first paint so there is no flash. A file rather than an inline
// script so the Content-Security-Policy can forbid inline script (script-src 'self').
try {
  var t = localStorage.getItem('clarateach.theme');
  if (t !== 'light' && t !== 'dark') t = matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  document.documentElement.dataset.theme = t;
} catch (e) {}
