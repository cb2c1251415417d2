import math, subprocess, time, os, statistics, sys, tempfile, json
B = sys.argv[1]
st = tempfile.mkdtemp(prefix="sbxb")
env = dict(os.environ, CLARATEACH_STATE_DIR=st, CLARATEACH_SEAT_STORE_SIZE="1T")
def run(*a, check=True):
    r = subprocess.run([B, "sandbox", *a], env=env, capture_output=True, text=True)
    if check and r.returncode != 0: raise SystemExit(f"{a}: {r.stderr}")
    return r
run("create", "--name", "bench")
for _ in range(5): run("run", "bench", "--cmd", "python3 -c 'print(1)'")
ts = []
for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 100):
    t = time.perf_counter(); r = run("run", "bench", "--cmd", "python3 -c 'print(1)'"); ts.append((time.perf_counter() - t) * 1e3)
    assert r.stdout == "1\n"
# Nearest-rank percentiles: p99 of n samples is the ceil(0.99 n)-th smallest (of 100 samples the
# 99th, not the largest, which the first version of this script reported as p99).
ts.sort(); p = lambda q: ts[max(0, math.ceil(q * len(ts)) - 1)]
print(f"run python3 -c 'print(1)': n={len(ts)} p50 {p(0.5):.1f} ms p99 {p(0.99):.1f} ms max {ts[-1]:.1f} ms")
t0 = []
for _ in range(3): 
    t = time.perf_counter(); r = run("run", "bench", "--cmd", "true"); t0.append((time.perf_counter() - t) * 1e3)
print(f"run true: {min(t0):.1f} ms (min of 3)")
seq = []
for i in range(10):
    t = time.perf_counter()
    run("create", "--name", f"s{i}"); run("run", f"s{i}", "--cmd", "echo hi"); run("clean", f"s{i}")
    seq.append((time.perf_counter() - t) * 1e3)
seq.sort()
print(f"create -> run -> clean: n=10 p50 {seq[5]:.0f} ms min {seq[0]:.0f} ms max {seq[-1]:.0f} ms")
run("clean", "--all")
print("state", st)
