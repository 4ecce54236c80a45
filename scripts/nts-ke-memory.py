#!/usr/bin/env python3
"""Memory of `ntplab serve`'s NTS-KE listener under held connections.

    scripts/nts-ke-memory.py [NTPLAB]     (default target/release/ntplab)

Starts `ntplab serve` with [nts] on loopback (a self-signed certificate made
with openssl; ke_timeout 60 s so that held connections are not cut during
the measurement; ke_connections at its default, 128), then measures the
server's resident memory (VmRSS) before and after opening N connections
that it must hold:

- idle: TCP connected, nothing sent (the TLS acceptor waits);
- handshake: each sends a ClientHello announced as 65,000 octets in TLS
  records of 16 KiB and never finishes it, so rustls must keep what came
  (its limit for joining a handshake message is 64 KiB);

with N = 128 (the limit) and 200 (72 over it: those are closed at once).
The server runs without CAP_SYS_TIME and never touches the clock; every
connection is to 127.0.0.1; the server started here is stopped by its PID.
"""
import os, signal, socket, struct, subprocess, sys, tempfile, time

repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ntplab = sys.argv[1] if len(sys.argv) > 1 else os.path.join(repo, "target/release/ntplab")


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


def hold(pid, ke_port, mode, n):
    time.sleep(0.5)
    before = rss_kb(pid)
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", ke_port), timeout=5)
        if mode == "handshake":
            body = bytes([1]) + (65000).to_bytes(3, "big") + b"\0" * 65000
            body = body[:65000]  # the end left out: the message stays incomplete
            try:
                for off in range(0, len(body), 16384):
                    part = body[off:off + 16384]
                    s.sendall(bytes([22, 3, 1]) + struct.pack(">H", len(part)) + part)
            except OSError:
                pass  # refused (over the limit): closed by the server
        socks.append(s)
    time.sleep(2.0)
    after = rss_kb(pid)
    for s in socks:
        s.close()
    print(f"{mode:9} {n:4} connections: VmRSS {before} kB -> {after} kB, "
          f"+{after - before} kB, {(after - before) / n:.1f} kB a connection")
    time.sleep(1.0)


def main():
    work = tempfile.mkdtemp(prefix="nts-ke-memory.")
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-days", "2", "-nodes", "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    ntp, ke = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    conf = os.path.join(work, "serve.toml")
    with open(conf, "w") as f:
        f.write(f'listen = ["127.0.0.1:{ntp}"]\n[local]\nstratum = 1\n[nts]\ncertificate = "{cert}"\n'
                f'key = "{key}"\nke_listen = ["127.0.0.1:{ke}"]\nke_timeout = 60\n')
    server = subprocess.Popen(["setpriv", "--inh-caps=-sys_time", "--bounding-set=-sys_time",
                               ntplab, "serve", "--duration", "120", "--config", conf],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", ke), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        for mode, n in (("idle", 128), ("handshake", 128), ("handshake", 200)):
            hold(server.pid, ke, mode, n)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        for name in os.listdir(work):
            os.remove(os.path.join(work, name))
        os.rmdir(work)


if __name__ == "__main__":
    main()
