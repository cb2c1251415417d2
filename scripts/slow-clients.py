# Opens N slow clients (partial headers, never finished) against a running serve, then samples
# the server's fds and RSS at given times; also checks how many client sockets the server closed.
import socket, sys, time, os, resource, json, urllib.request
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
pid, port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
samples = [float(x) for x in sys.argv[4].split(",")]
def stat():
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = 0
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"): rss = int(l.split()[1])
    return fds, rss
print("idle", stat())
socks = []
t0 = time.time()
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
    socks.append(s)
print(f"opened {n} in {time.time()-t0:.2f}s")
for t in samples:
    while time.time() - t0 < t: time.sleep(0.1)
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            d = s.recv(1, socket.MSG_PEEK)
            if d == b"": closed += 1
            else: closed += 1  # got a response (e.g. 408) => server ended it
        except BlockingIOError: pass
        except OSError: closed += 1
    try:
        st = time.time(); urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5).read(); lat = time.time()-st
    except Exception as e: lat = repr(e)
    print(json.dumps({"t": t, "fds_rss_kb": stat(), "client_socks_closed_by_server": closed, "health_latency": lat}))
