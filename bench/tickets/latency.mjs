// Run: node --experimental-websocket bench/tickets/latency.mjs http://127.0.0.1:PORT "$(cat DATA_DIR/instructor.token)"
// against a running `clarateach up` (needs the sandbox backend for the terminal step). Figures in BENCHMARKS.md.
// Ticket cost: sequential POST /api/session/ticket vs GET /api/me (both header-authenticated), and
// instructor session creation, against a running `clarateach up`.
const [base, instructor] = process.argv.slice(2);
let N = 500;
async function timeit(label, fn) {
  for (let i = 0; i < 20; i++) await fn(); // warm-up
  const t = [];
  for (let i = 0; i < N; i++) {
    const s = performance.now();
    await fn();
    t.push(performance.now() - s);
  }
  t.sort((a, b) => a - b);
  const p = (q) => t[Math.min(t.length - 1, Math.floor(q * t.length))].toFixed(2);
  console.log(`${label}: n=${N} p50=${p(0.5)} ms p99=${p(0.99)} ms`);
}
const H = (tok) => ({ Authorization: `Bearer ${tok}`, 'Content-Type': 'application/json' });
const sess = await (await fetch(`${base}/api/instructor/sessions`, { method: 'POST', headers: H(instructor) })).json();
const w = await (await fetch(`${base}/api/workshops`, { method: 'POST', headers: H(sess.token), body: JSON.stringify({ name: 'bench', seats: 1 }) })).json();
const id = w.workshop.id;
await fetch(`${base}/api/workshops/${id}/start`, { method: 'POST', headers: H(sess.token) });
for (let i = 0; i < 200; i++) {
  const r = await (await fetch(`${base}/api/workshops/${id}`, { headers: H(sess.token) })).json();
  if (r.workshop.status === 'running') break;
  await new Promise((r) => setTimeout(r, 100));
}
const j = await (await fetch(`${base}/api/join`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ code: w.workshop.code }) })).json();
await timeit('GET /api/me (learner header)', async () => {
  const r = await fetch(`${base}/api/me`, { headers: H(j.token) });
  if (r.status !== 200) throw new Error(`me ${r.status}`);
  await r.arrayBuffer();
});
N = 40; // with the 20 warm-ups, under the 64 unused tickets a seat may hold
await timeit('POST /api/session/ticket (learner)', async () => {
  const r = await fetch(`${base}/api/session/ticket`, { method: 'POST', headers: H(j.token), body: '{}' });
  if (r.status !== 200) throw new Error(`ticket ${r.status}`);
  await r.arrayBuffer();
});
await timeit('POST /api/session/ticket (instructor session)', async () => {
  const r = await fetch(`${base}/api/session/ticket`, { method: 'POST', headers: H(sess.token), body: JSON.stringify({ workshop_id: id, seat: 1, mode: 'watch' }) });
  if (r.status !== 200) throw new Error(`ticket ${r.status}`);
  await r.arrayBuffer();
});
N = 100;
await timeit('ticket + WebSocket open to first frame (learner terminal)', async () => {
  const r = await fetch(`${base}/api/session/ticket`, { method: 'POST', headers: H(j.token), body: '{}' });
  const { ticket } = await r.json();
  const ws = new WebSocket(`${base.replace('http', 'ws')}/api/session/terminal?ticket=${ticket}`);
  await new Promise((res, rej) => {
    ws.onmessage = () => res();
    ws.onerror = (e) => rej(new Error('ws error'));
  });
  ws.close();
});
N = 500;
await timeit('GET /api/workshops (instructor token)', async () => {
  const r = await fetch(`${base}/api/workshops`, { headers: H(instructor) });
  await r.arrayBuffer();
});
await timeit('GET /api/workshops (session token)', async () => {
  const r = await fetch(`${base}/api/workshops`, { headers: H(sess.token) });
  await r.arrayBuffer();
});
await fetch(`${base}/api/workshops/${id}/stop`, { method: 'POST', headers: H(sess.token) });
