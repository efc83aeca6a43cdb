#!/usr/bin/python3
"""An HTTP proxy on 127.0.0.1 that lets a client reach a fixed Microsoft
host on the fake and nothing else: CONNECT HOST:443 for a host named on the
command line is tunnelled to the fake's loopback port, every other request
is refused (403) and never resolved or forwarded. Each request line goes to
the log file, forwarded or refused, so a test can show what the client
tried. The first line on stdout is the proxy's port.

usage: loopback_proxy.py FAKE_PORT LOG_FILE HOST[,HOST...]
"""
import socket
import sys
import threading

HEAD_MAX = 16 * 1024


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def refuse(conn):
    try:
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                     b"Connection: close\r\n\r\n")
    except OSError:
        pass
    conn.close()


def handle(conn, fake_port, allowed, log, lock):
    head = b""
    while b"\r\n\r\n" not in head and len(head) < HEAD_MAX:
        data = conn.recv(4096)
        if not data:
            conn.close()
            return
        head += data
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    ok = (len(parts) == 3 and parts[0] == "CONNECT"
          and parts[1].lower() in allowed)
    with lock:
        log.write(("forwarded " if ok else "refused ") + line + "\n")
        log.flush()
    if not ok:
        refuse(conn)
        return
    try:
        up = socket.create_connection(("127.0.0.1", fake_port))
    except OSError:
        refuse(conn)
        return
    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    rest = head.split(b"\r\n\r\n", 1)[1]
    if rest:
        up.sendall(rest)
    threading.Thread(target=pump, args=(up, conn), daemon=True).start()
    pump(conn, up)
    up.close()
    conn.close()


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    fake_port = int(sys.argv[1])
    allowed = {h.lower() + ":443" for h in sys.argv[3].split(",")}
    log = open(sys.argv[2], "a")
    lock = threading.Lock()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    print(srv.getsockname()[1], flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle,
                         args=(conn, fake_port, allowed, log, lock),
                         daemon=True).start()


if __name__ == "__main__":
    main()
