"""`lite serve` writes each response's headers and body together: the transport wrapper alone,
and raw HTTP/1.1 exchanges (keep-alive, pipelining, HEAD, Expect: 100-continue) with a real
server."""

from __future__ import annotations

import json
import socket

from lite_export.serving.server import _HeldHeaders


class Transport:
    """Records the writes a protocol makes (the wrapper's only dependency)."""

    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data):
        self.writes.append(bytes(data))

    def close(self):
        self.closed = True

    def is_closing(self):
        return self.closed


def test_headers_wait_for_the_body_and_nothing_else_waits():
    t = Transport()
    held = _HeldHeaders(t)
    held.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert t.writes == []  # held
    held.write(b"{}")
    assert t.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]  # one write
    held.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # an interim answer goes out at once
    assert t.writes[-1] == b"HTTP/1.1 100 Continue\r\n\r\n"
    held.write(b"chunk")  # body data goes out at once
    assert t.writes[-1] == b"chunk"
    held.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    held.flush()  # a response without a body write: flushed when it completes
    assert t.writes[-1] == b"HTTP/1.1 204 No Content\r\n\r\n"
    held.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    held.close()  # closing flushes first
    assert t.writes[-1].startswith(b"HTTP/1.1 500") and t.closed
    assert held.is_closing()  # everything else is the transport's


def _exchange(url: str, raw: bytes, answers: int) -> list[bytes]:
    """Send raw bytes on one connection; the responses, split at their status lines."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(raw)
        data = b""
        while data.count(b"HTTP/1.1 ") < answers or not _complete(data, answers):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return [b"HTTP/1.1 " + part for part in data.split(b"HTTP/1.1 ")[1:]]


def _complete(data: bytes, answers: int) -> bool:
    """At least ``answers`` responses, the last one whole (a final status, its body read)."""
    parts = data.split(b"HTTP/1.1 ")[1:]
    if len(parts) < answers:
        return False
    last = parts[-1]
    head, _, body = last.partition(b"\r\n\r\n")
    if b"100 Continue" in head.split(b"\r\n")[0]:
        return False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return True


def test_keep_alive_pipelining_head_and_100_continue(server, item_ids):
    body = json.dumps({"history": item_ids[:2], "k": 2}).encode()
    post = (
        b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    answers = _exchange(server.url, post + get + post, 3)  # pipelined on one connection
    assert [a.split(b"\r\n")[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 3
    assert json.loads(answers[0].split(b"\r\n\r\n", 1)[1])["items"]
    assert answers[1].endswith(b'{"status":"ok"}')
    head = b"HEAD /v1/model HTTP/1.1\r\nHost: x\r\n\r\n" + get
    answers = _exchange(server.url, head, 2)
    assert answers[0].startswith(b"HTTP/1.1 405") and answers[1].endswith(b'{"status":"ok"}')
    expect = post.replace(b"Host: x\r\n", b"Host: x\r\nExpect: 100-continue\r\n")
    answers = _exchange(server.url, expect, 1)
    assert answers[-1].startswith(b"HTTP/1.1 200 OK") and b'"items"' in answers[-1]
