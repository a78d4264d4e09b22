#!/usr/bin/env python3
"""A stand-in OpenAI completions server with known timings, to check loadgen.py.

    Benchmarks/serving/fake_server.py [--port 0] [--ttft-ms 100] [--itl-ms 20]
                                      [--fail-every N] [--drop-every N]

Serves GET /health, GET /v1/models, GET /metrics (tokens sent so far) and
POST /v1/completions. A completion sleeps
--ttft-ms, then sends max_tokens text events (one token each, "t0 t1 ..."), --itl-ms
apart, then a final event with finish_reason "length" and usage, then `data: [DONE]`
(streaming: chunked transfer encoding, like llama-server). Every --fail-every-th request
(by arrival) is answered 503 with an OpenAI-style error object; every --drop-every-th
stream is cut off after half its tokens (no [DONE]). Requests are handled on separate
threads, so timings do not depend on concurrency. Prints `listening on PORT` when ready.
Python standard library only; binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cfg: argparse.Namespace
    lock = threading.Lock()
    arrivals = 0
    tokens = 0  # tokens sent in text events, for GET /metrics
    running = 0  # completions in progress, for GET /metrics

    def log_message(self, fmt, *a):  # quiet
        pass

    def _json(self, status: int, obj) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            self._json(200, {"status": "ok"})
        elif self.path == "/metrics":
            data = (f"# TYPE fake_tokens_generated_total counter\n"
                    f"fake_tokens_generated_total {type(self).tokens}\n"
                    f"# TYPE fake_requests_running gauge\n"
                    f"fake_requests_running {type(self).running}\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "code": 404}})

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_POST(self):
        cls = type(self)
        with cls.lock:
            cls.running += 1
        try:
            self._complete()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (e.g. its time limit)
        finally:
            with cls.lock:
                cls.running -= 1

    def _complete(self):
        if self.path != "/v1/completions":
            self._json(404, {"error": {"message": f"no route {self.path}", "code": 404}})
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        cls = type(self)
        with cls.lock:
            cls.arrivals += 1
            n = cls.arrivals
        cfg = self.cfg
        if cfg.fail_every and n % cfg.fail_every == 0:
            self._json(503, {"error": {"message": "server busy (fake)", "code": 503}})
            return
        max_tokens = int(body.get("max_tokens", 16))
        prompt = body.get("prompt")
        n_prompt = len(prompt) if isinstance(prompt, list) else len(str(prompt).split())
        time.sleep(cfg.ttft_ms / 1000.0)
        usage = {"prompt_tokens": n_prompt, "completion_tokens": max_tokens,
                 "total_tokens": n_prompt + max_tokens}
        if not body.get("stream"):
            time.sleep(cfg.itl_ms * (max_tokens - 1) / 1000.0)
            self._json(200, {"object": "text_completion", "choices": [
                {"index": 0, "text": " ".join(f"t{i}" for i in range(max_tokens)),
                 "finish_reason": "length"}], "usage": usage})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        drop = cfg.drop_every and n % cfg.drop_every == 0
        for i in range(max_tokens):
            if i:
                time.sleep(cfg.itl_ms / 1000.0)
            if drop and i == max_tokens // 2:
                self.close_connection = True
                return  # cut off: no terminating chunk
            ev = {"choices": [{"index": 0, "text": f" t{i}", "finish_reason": None}]}
            self._chunk(b"data: " + json.dumps(ev).encode() + b"\n\n")
            with cls.lock:
                cls.tokens += 1
        ev = {"choices": [{"index": 0, "text": "", "finish_reason": "length"}], "usage": usage}
        self._chunk(b"data: " + json.dumps(ev).encode() + b"\n\n")
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")


def serve(cfg: argparse.Namespace) -> ThreadingHTTPServer:
    """Starts the server on a background thread and returns it (server_address has the port)."""
    handler = type("BoundHandler", (Handler,), {"cfg": cfg, "arrivals": 0, "tokens": 0, "running": 0,
                                              "lock": threading.Lock()})
    server_class = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 256})
    srv = server_class(("127.0.0.1", cfg.port), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ttft-ms", type=float, default=100.0)
    p.add_argument("--itl-ms", type=float, default=20.0)
    p.add_argument("--fail-every", type=int, default=0)
    p.add_argument("--drop-every", type=int, default=0)
    return p.parse_args(argv)


if __name__ == "__main__":
    srv = serve(parse_args(sys.argv[1:]))
    print(f"listening on {srv.server_address[1]}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
