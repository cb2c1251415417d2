# A WebSocket echo server with the standard library only (no pip in a seat), for the preview
# tests: `python3 preview_echo.py PORT`. A plain GET answers the cookies it received and tries
# to set cookies a seat must not be able to set (another host's, the preview session's).
import base64, hashlib, socket, sys, threading

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

def recv_exact(c, n):
    b = b""
    while len(b) < n:
        part = c.recv(n - len(b))
        if not part:
            raise EOFError
        b += part
    return b

def serve(c):
    head = b""
    while b"\r\n\r\n" not in head:
        part = c.recv(4096)
        if not part:
            return
        head += part
    lines = head.split(b"\r\n")
    hdr = {}
    for l in lines[1:]:
        if b":" in l:
            k, v = l.split(b":", 1)
            hdr[k.strip().lower()] = v.strip()
    if b"sec-websocket-key" not in hdr:
        body = b"cookies=" + hdr.get(b"cookie", b"") + b";host=" + hdr.get(b"host", b"")
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                  b"Set-Cookie: app=1; Path=/\r\n"
                  b"Set-Cookie: tossed=1; Domain=localhost; Path=/\r\n"
                  b"Set-Cookie: clarateach_preview=forged; Path=/\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        return
    accept = base64.b64encode(hashlib.sha1(hdr[b"sec-websocket-key"] + GUID).digest())
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    while True:
        b0, b1 = recv_exact(c, 2)
        op, n = b0 & 0x0F, b1 & 0x7F
        if n == 126:
            n = int.from_bytes(recv_exact(c, 2), "big")
        elif n == 127:
            n = int.from_bytes(recv_exact(c, 8), "big")
        mask = recv_exact(c, 4) if b1 & 0x80 else b"\0\0\0\0"
        data = bytes(x ^ mask[i % 4] for i, x in enumerate(recv_exact(c, n)))
        if op == 8:
            c.sendall(b"\x88\x00")
            return
        if op in (1, 2):
            out = bytes([0x80 | op])
            if len(data) < 126:
                out += bytes([len(data)])
            elif len(data) < 65536:
                out += bytes([126]) + len(data).to_bytes(2, "big")
            else:
                out += bytes([127]) + len(data).to_bytes(8, "big")
            c.sendall(out + data)

def main():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=lambda: (serve_safe(c)), daemon=True).start()

def serve_safe(c):
    try:
        serve(c)
    except Exception:
        pass
    finally:
        c.close()

main()
