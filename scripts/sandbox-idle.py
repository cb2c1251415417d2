import subprocess, os, sys, tempfile, glob, time
B = sys.argv[1]; N = int(sys.argv[2])
st = tempfile.mkdtemp(prefix="sbxi")
env = dict(os.environ, CLARATEACH_STATE_DIR=st, CLARATEACH_SEAT_STORE_SIZE="1T")
def run(*a):
    r = subprocess.run([B, "sandbox", *a], env=env, capture_output=True, text=True)
    if r.returncode != 0: raise SystemExit(f"{a}: {r.stderr}")
    return r
def avail():
    for l in open("/proc/meminfo"):
        if l.startswith("MemAvailable"): return int(l.split()[1])
a0 = avail(); t = time.time()
for i in range(N): run("create", "--name", f"idle{i}")
el = time.time() - t
time.sleep(3)
pids = set()
for f in glob.glob("/sys/fs/cgroup/pids/clarateach-sandbox/*/idle*/**/cgroup.procs", recursive=True):
    pids |= {int(x) for x in open(f).read().split()}
pss = 0
for p in pids:
    try:
        for l in open(f"/proc/{p}/smaps_rollup"):
            if l.startswith("Pss:"): pss += int(l.split()[1])
    except OSError: pass
du = subprocess.run(["du", "-sk", "--apparent-size", st], capture_output=True, text=True).stdout.split()[0]
dur = subprocess.run(["du", "-sk", st], capture_output=True, text=True).stdout.split()[0]
print(f"{N} idle sandboxes: created in {el:.1f} s; {len(pids)} processes, PSS {pss/1024:.1f} MiB total = {pss/1024/N:.2f} MiB each; MemAvailable drop {(a0-avail())/1024/N:.2f} MiB each; state dir on disk {int(dur)/1024:.0f} MiB ({int(dur)/1024/N:.1f} MiB each, apparent {int(du)/1024/1024:.0f} GiB sparse)")
t = time.time(); run("clean", "--all"); print(f"clean --all of {N}: {time.time()-t:.1f} s")
left = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True).stdout
print("mounts left:", sum(1 for l in left.splitlines() if l.startswith(st)))
