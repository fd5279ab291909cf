#!/usr/bin/env python3
"""Health checks that ask each service a real question (used by deploy/local/*.sh).

Runs with the project's virtualenv if there is one, else any python3: Kafka is checked with a raw
ApiVersions+Metadata exchange over the Kafka protocol so that no client library is needed.
"""

from __future__ import annotations

import socket
import struct
import sys
import urllib.request


def kafka(bootstrap: str) -> bool:
    """Send a Metadata v1 request (all topics) and expect a well-formed reply with one broker."""
    host, port = bootstrap.rsplit(":", 1)
    client_id = b"driftline-health"
    # request header v1: api_key=3 (Metadata), api_version=1, correlation_id, client_id; body: topics=-1 (all)
    body = struct.pack(">hhih", 3, 1, 7, len(client_id)) + client_id + struct.pack(">i", -1)
    with socket.create_connection((host, int(port)), timeout=3) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read(sock, 4))[0]
        reply = _read(sock, size)
    correlation_id, n_brokers = struct.unpack(">ii", reply[:8])
    return correlation_id == 7 and n_brokers >= 1


def _read(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return bool(resp.status == 200)


def main() -> int:
    what, target = sys.argv[1], sys.argv[2]
    try:
        ok = kafka(target) if what == "kafka" else http_ok(target)
    except OSError:
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
