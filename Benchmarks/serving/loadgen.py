#!/usr/bin/env python3
"""Load generator for an OpenAI-compatible completions server on this machine.

Sends `POST /v1/completions` requests at one or more concurrency levels and measures,
per level: requests ok / failed / unfinished / not started, aggregate decode throughput
(completion tokens of the finished requests / wall time of the level), per-stream
tokens/s, time to first token (TTFT), inter-token latency (ITL) and end-to-end latency
(p50 / p99), finish reasons, and the errors grouped by status and message. Optionally a
soak phase keeps the highest concurrency busy for a while and lists every failure.

    Benchmarks/serving/loadgen.py --url http://127.0.0.1:8080 --concurrency 1,4,16 \\
        --requests 32 --time-limit 120 --prompt-tokens 32 --max-tokens 32 --json out.json

Python 3 standard library (asyncio with a small HTTP/1.1 client: one connection per
request, `Connection: close`), and uvloop's event loop where it is installed (`--loop`:
about 40 % less client CPU per streamed token). Only loopback hosts are accepted.

Measurements (streaming, the default): the clock starts just before the connection is
opened. TTFT = time until the first server-sent `data:` event whose choices[0].text is
non-empty. ITL = the gaps between consecutive such events (one event is usually one
token; pooled over all requests of the level). Per-stream decode rate of one request =
(completion tokens - 1) / (time of last text event - time of first text event). TTFT,
ITL and stream rates include what was seen of unfinished requests; end-to-end latency
and `agg tok/s` (completion tokens of ok requests / wall time) count ok requests only;
`deliv tok/s` adds the text events that unfinished requests received.
Completion tokens come from the `usage.completion_tokens` of the final event when the
server sends one, otherwise they are the number of text events. A request counts as ok
only with status 200, no error event, and (streaming) a final `data: [DONE]`.

Time limit: `--time-limit` is a hard stop per level. Requests still running then are
cancelled and counted as unfinished; requests never sent are counted as not started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import socket
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Optional

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


# ---------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Load generator for an OpenAI-compatible /v1/completions server (loopback only).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--concurrency", default="1,4,16,64",
                   help="comma-separated concurrency levels, run one after the other")
    p.add_argument("--requests", type=int, default=64, help="requests per level")
    p.add_argument("--time-limit", type=float, default=120.0,
                   help="hard stop per level in seconds; running requests count as unfinished")
    prompt = p.add_mutually_exclusive_group()
    prompt.add_argument("--prompt-tokens", type=int, default=32,
                        help="prompt of this many tokens (token ids, or about that many words with --prompt-kind text)")
    prompt.add_argument("--prompt", help="prompt text (sent as is, the same for every request)")
    p.add_argument("--prompt-kind", choices=["ids", "text"], default="ids",
                   help="with --prompt-tokens: send token ids [1, 2, ...] or a text of about N words")
    p.add_argument("--distinct-prompts", action=argparse.BooleanOptionalAction, default=True,
                   help="make every request's prompt differ from its first token on, so that no "
                        "server can reuse a cached prompt prefix")
    p.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto",
                   help="event loop: uvloop (pip install uvloop) takes about 40%% less of the "
                        "client's CPU time per streamed token than asyncio's own loop, which "
                        "leaves more of a small machine to the server measured; auto: uvloop "
                        "when it is installed")
    p.add_argument("--max-tokens", type=int, default=32, help="max_tokens of every request")
    p.add_argument("--max-tokens-spread", type=float, default=0.0,
                   help="draw each request's max_tokens uniformly from max_tokens·(1 ± SPREAD) "
                        "(deterministic per request index): streams of equal lengths that start "
                        "together finish together and resubmit in lockstep, a burst every time")
    p.add_argument("--stagger", type=float, default=0.0,
                   help="seconds over which a level's streams start (stream i waits i/N of it), "
                        "as independent clients would; 0: all at once")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--seed", type=int, default=None, help="seed field of every request")
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    p.add_argument("--ignore-eos", action="store_true",
                   help='send "ignore_eos": true (llama-server generates max_tokens tokens; '
                        'servers that ignore unknown fields may stop earlier)')
    p.add_argument("--extra", default=None,
                   help="JSON object merged into every request body, e.g. '{\"cache_prompt\": false}'")
    p.add_argument("--model", default=None,
                   help="model field of the requests (default: the first id from GET /v1/models, if any)")
    p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=True,
                   help="stream with server-sent events (needed for TTFT and ITL)")
    p.add_argument("--warmup", type=int, default=1,
                   help="requests sent one at a time before the first level, not counted")
    p.add_argument("--soak", type=float, default=0.0,
                   help="after the levels, keep the highest concurrency busy for this many seconds")
    p.add_argument("--drain", type=float, default=60.0,
                   help="soak: seconds to let running requests finish after the soak time")
    p.add_argument("--request-timeout", type=float, default=600.0,
                   help="seconds one request may take before it fails")
    p.add_argument("--scrape-metrics", action=argparse.BooleanOptionalAction, default=True,
                   help="read GET /metrics (Prometheus text) before and after each level and "
                        "store the change of every numeric series")
    p.add_argument("--busy-metric", default="auto",
                   help="gauge in GET /metrics that counts the requests the server is working on; "
                        "before each level loadgen waits until it is 0 (requests cancelled at the "
                        "previous level's time limit may still run). auto: the first series named "
                        "*requests_processing or *requests_running (llama-server: "
                        "llamacpp:requests_processing); 'none' skips the wait")
    p.add_argument("--settle-timeout", type=float, default=120.0,
                   help="seconds to wait for that gauge to reach 0 before a level")
    p.add_argument("--label", default=None, help="name of this run in the JSON and the plots")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="note stored under meta.notes in the JSON (repeatable), e.g. server=llama-server")
    p.add_argument("--json", dest="json_out", default=None, help="write the results as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)

    try:
        args.levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    except ValueError:
        p.error(f"--concurrency: expected comma-separated positive integers, got {args.concurrency!r}")
    if not args.levels or any(c < 1 for c in args.levels):
        p.error(f"--concurrency: expected comma-separated positive integers, got {args.concurrency!r}")
    if args.requests < 1:
        p.error(f"--requests: expected a positive integer, got {args.requests}")
    if not args.time_limit > 0:
        p.error(f"--time-limit: expected seconds > 0, got {args.time_limit}")
    if args.prompt is None and args.prompt_tokens < 1:
        p.error(f"--prompt-tokens: expected a positive integer, got {args.prompt_tokens}")
    if args.max_tokens < 1:
        p.error(f"--max-tokens: expected a positive integer, got {args.max_tokens}")
    if not 0 <= args.max_tokens_spread < 1:
        p.error(f"--max-tokens-spread: expected a fraction in [0, 1), got {args.max_tokens_spread}")
    if not args.stagger >= 0:
        p.error(f"--stagger: expected seconds >= 0, got {args.stagger}")
    if args.soak < 0 or args.drain < 0:
        p.error("--soak and --drain: expected seconds >= 0")
    if args.extra is not None:
        try:
            args.extra_fields = json.loads(args.extra)
        except json.JSONDecodeError as e:
            p.error(f"--extra: expected a JSON object, got {args.extra!r} ({e})")
        if not isinstance(args.extra_fields, dict):
            p.error(f"--extra: expected a JSON object, got {args.extra!r}")
    else:
        args.extra_fields = {}

    args.notes = {}
    for kv in args.meta:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            p.error(f"--meta: expected KEY=VALUE, got {kv!r}")
        args.notes[k] = v

    u = urllib.parse.urlsplit(args.url)
    if u.scheme != "http":
        p.error(f"--url: expected http://127.0.0.1:PORT (plain http on loopback), got {args.url!r}")
    host = u.hostname or ""
    if host not in LOOPBACK_HOSTS:
        p.error(f"--url: host {host!r} refused; expected one of {sorted(LOOPBACK_HOSTS)} (loopback only)")
    try:
        port = u.port or 80
    except ValueError:
        p.error(f"--url: bad port in {args.url!r}")
    args.host = host
    args.port = port
    args.base_path = u.path.rstrip("/")
    return args


# ---------------------------------------------------------------------------------------
# Minimal HTTP/1.1 client (one connection per request)
# ---------------------------------------------------------------------------------------

class HTTPError(Exception):
    """A transport or protocol failure (not an HTTP status)."""


async def _open(host: str, port: int):
    # "localhost" may resolve to ::1 first; open_connection tries the addresses in turn.
    return await asyncio.open_connection(host, port, limit=1 << 20)


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    if not status_line:
        raise HTTPError("connection closed before the status line")
    parts = status_line.decode("latin-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise HTTPError(f"bad status line {status_line[:80]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if not line:
            raise HTTPError("connection closed inside the headers")
        if line in (b"\r\n", b"\n"):
            break
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers


async def _body_chunks(reader: asyncio.StreamReader, headers: dict[str, str]):
    """Yields the response body as it arrives (chunked, Content-Length or until EOF)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readline()
            if not size_line:
                raise HTTPError("connection closed inside a chunked body")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                # trailers until the empty line (or EOF)
                while True:
                    t = await reader.readline()
                    if t in (b"\r\n", b"\n", b""):
                        return
            data = await reader.readexactly(size)
            await reader.readexactly(2)  # CRLF after each chunk
            yield data
    elif "content-length" in headers:
        remaining = int(headers["content-length"])
        while remaining > 0:
            data = await reader.read(min(remaining, 65536))
            if not data:
                raise HTTPError(f"connection closed with {remaining} body bytes missing")
            remaining -= len(data)
            yield data
    else:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            yield data


def _request_bytes(method: str, host: str, port: int, path: str, body: Optional[bytes],
                   accept: str) -> bytes:
    host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host_header}", f"Accept: {accept}",
             "Connection: close", "User-Agent: sparsemoe-loadgen"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


async def http_get(host: str, port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    async def go():
        reader, writer = await _open(host, port)
        try:
            writer.write(_request_bytes("GET", host, port, path, None, "application/json"))
            await writer.drain()
            status, headers = await _read_head(reader)
            body = b"".join([c async for c in _body_chunks(reader, headers)])
            return status, body
        finally:
            writer.close()
    return await asyncio.wait_for(go(), timeout)


def parse_prometheus(text: str) -> dict[str, float]:
    """`name{labels} value` lines of the Prometheus text format -> {"name{labels}": value}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "}" in line:
            cut = line.rindex("}") + 1
            key, rest = line[:cut], line[cut:].split()
        else:
            key, *rest = line.split()
        try:
            out[key] = float(rest[0])  # a timestamp may follow the value
        except (ValueError, IndexError):
            continue
    return out


class MetricsScraper:
    """GET /metrics before and after a level; gives up after the first failure."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.enabled = args.scrape_metrics
        self.error: Optional[str] = None

    async def read(self) -> Optional[dict[str, float]]:
        if not self.enabled:
            return None
        try:
            status, body = await http_get(self.args.host, self.args.port,
                                          self.args.base_path + "/metrics")
        except (OSError, HTTPError, asyncio.TimeoutError) as e:
            status, body = 0, f"{type(e).__name__}: {e}".encode()
        if status != 200:
            self.enabled = False
            self.error = f"GET /metrics: status {status}: {body[:200].decode('utf-8', 'replace')}"
            return None
        return parse_prometheus(body.decode("utf-8", "replace"))

    def busy_key(self, metrics: dict[str, float]) -> Optional[str]:
        want = self.args.busy_metric
        if want == "none":
            return None
        for key in metrics:
            name = key.split("{", 1)[0]
            if want == "auto":
                if name.endswith("requests_processing") or name.endswith("requests_running"):
                    return key
            elif name == want or key == want:
                return key
        return None

    async def settle(self) -> dict:
        """Waits until the server reports no request in progress (when it can tell)."""
        t0 = time.perf_counter()
        m = await self.read()
        key = self.busy_key(m) if m is not None else None
        if key is None:
            return {"checked": False}
        first = m[key]
        while m is not None and key in m and m[key] > 0:
            if time.perf_counter() - t0 >= self.args.settle_timeout:
                print(f"warning: {key} is still {m[key]:g} after {self.args.settle_timeout:g} s; "
                      f"starting the level anyway", file=sys.stderr)
                return {"checked": True, "metric": key, "busy_before": first, "wait_s": time.perf_counter() - t0,
                        "timed_out": True}
            await asyncio.sleep(0.5)
            m = await self.read()
        return {"checked": True, "metric": key, "busy_before": first, "wait_s": time.perf_counter() - t0,
                "timed_out": False}

    @staticmethod
    def delta(before: Optional[dict], after: Optional[dict]) -> Optional[dict]:
        if before is None or after is None:
            return None
        return {"after": after,
                "change": {k: after[k] - before[k] for k in after if k in before and after[k] != before[k]}}


# ---------------------------------------------------------------------------------------
# One completion request
# ---------------------------------------------------------------------------------------

@dataclass
class Result:
    index: int
    start: float = 0.0                    # perf_counter at send (s)
    end: Optional[float] = None           # perf_counter at completion/failure
    status: int = 0                       # HTTP status, 0 when none was received
    ok: bool = False
    unfinished: bool = False
    error: Optional[str] = None
    text_times: list[float] = field(default_factory=list)  # arrival of each event with text
    completion_tokens: Optional[int] = None
    prompt_tokens: Optional[int] = None
    token_source: str = ""                # "usage" or "events"
    finish_reason: Optional[str] = None
    text_chars: int = 0

    @property
    def ttft(self) -> Optional[float]:
        return self.text_times[0] - self.start if self.text_times else None

    @property
    def e2e(self) -> Optional[float]:
        return None if self.end is None else self.end - self.start

    def itls(self) -> list[float]:
        t = self.text_times
        return [b - a for a, b in zip(t, t[1:])]

    def stream_rate(self) -> Optional[float]:
        """Decode tokens/s of this stream after its first token (an unfinished stream:
        its text events so far, each counted as one token)."""
        n = len(self.text_times) if self.unfinished else self.completion_tokens
        if n is None or n < 2 or len(self.text_times) < 2:
            return None
        span = self.text_times[-1] - self.text_times[0]
        return (n - 1) / span if span > 0 else None

    def record(self, t0: float) -> dict:
        """This request for the JSON: times in seconds from t0 (the level's start)."""
        r = lambda x: None if x is None else round(x, 4)  # noqa: E731
        return {"request": self.index, "start_s": r(self.start - t0), "status": self.status,
                "ok": self.ok, "unfinished": self.unfinished, "error": self.error,
                "completion_tokens": self.completion_tokens, "finish_reason": self.finish_reason,
                "ttft_s": r(self.ttft), "e2e_s": r(self.e2e) if not self.unfinished else None,
                "text_event_s": [r(t - self.start) for t in self.text_times]}


def _error_message(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        j = json.loads(text)
        if isinstance(j, dict):
            e = j.get("error", j)
            if isinstance(e, dict):
                return str(e.get("message") or e.get("msg") or e)[:300]
            return str(e)[:300]
    except json.JSONDecodeError:
        pass
    return text[:300] or "(empty body)"


def _take_usage(res: Result, obj: dict) -> None:
    usage = obj.get("usage")
    if isinstance(usage, dict):
        if isinstance(usage.get("completion_tokens"), int):
            res.completion_tokens = usage["completion_tokens"]
            res.token_source = "usage"
        if isinstance(usage.get("prompt_tokens"), int):
            res.prompt_tokens = usage["prompt_tokens"]


def _choice(obj: dict) -> dict:
    ch = obj.get("choices")
    if isinstance(ch, list) and ch and isinstance(ch[0], dict):
        return ch[0]
    return {}


async def run_request(args: argparse.Namespace, body: dict, res: Result) -> None:
    """Sends one completion and fills `res`. Never raises except CancelledError."""
    payload = json.dumps(body).encode()
    path = args.base_path + "/v1/completions"
    res.start = time.perf_counter()
    writer = None
    try:
        reader, writer = await _open(args.host, args.port)
        writer.write(_request_bytes("POST", args.host, args.port, path, payload,
                                    "text/event-stream" if args.stream else "application/json"))
        await writer.drain()
        status, headers = await _read_head(reader)
        res.status = status
        if status != 200:
            body_bytes = b"".join([c async for c in _body_chunks(reader, headers)])
            res.error = _error_message(body_bytes)
            return
        if not args.stream:
            body_bytes = b"".join([c async for c in _body_chunks(reader, headers)])
            now = time.perf_counter()
            obj = json.loads(body_bytes)
            if "error" in obj:
                res.error = "error object: " + _error_message(body_bytes)
                return
            ch = _choice(obj)
            res.text_chars = len(ch.get("text") or "")
            res.finish_reason = ch.get("finish_reason")
            _take_usage(res, obj)
            if res.completion_tokens is None:
                res.error = "no usage.completion_tokens in the response"
                return
            res.end = now
            res.ok = True
            return

        buf = b""
        done = False
        events_with_text = 0
        async for chunk in _body_chunks(reader, headers):
            now = time.perf_counter()
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line = line.rstrip(b"\r")
                if not line.startswith(b"data:"):
                    if line.startswith(b"error:"):
                        res.error = "error event: " + _error_message(line[6:])
                    continue  # blank separators, comments (": ping"), event:/id: lines
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    continue
                if done:
                    res.error = "data after [DONE]"
                    continue
                try:
                    obj = json.loads(data)
                except json.JSONDecodeError:
                    res.error = f"bad JSON in event: {data[:80]!r}"
                    continue
                if not isinstance(obj, dict):
                    res.error = f"event is not a JSON object: {data[:80]!r}"
                    continue
                if "error" in obj:
                    res.error = "error event: " + _error_message(data)
                    continue
                ch = _choice(obj)
                text = ch.get("text")
                if isinstance(text, str) and text:
                    res.text_times.append(now)
                    res.text_chars += len(text)
                    events_with_text += 1
                if ch.get("finish_reason") is not None:
                    res.finish_reason = ch["finish_reason"]
                _take_usage(res, obj)
        res.end = time.perf_counter()
        if res.completion_tokens is None:
            res.completion_tokens = events_with_text
            res.token_source = "events"
        if res.error is None and not done:
            res.error = "stream ended without data: [DONE]"
        if res.error is None and res.finish_reason is None:
            res.error = "stream had no finish_reason"
        res.ok = res.error is None
    except asyncio.CancelledError:
        res.unfinished = True
        raise
    except (OSError, HTTPError, asyncio.IncompleteReadError, ValueError) as e:
        res.error = f"{type(e).__name__}: {e}"[:300]
    finally:
        if res.end is None and not res.unfinished:
            res.end = time.perf_counter()
        if writer is not None:
            writer.close()


# ---------------------------------------------------------------------------------------
# Prompts and request bodies
# ---------------------------------------------------------------------------------------

WORDS = ("the quick brown fox jumps over a lazy dog while seven tall ships sail past "
         "an old grey harbour under clear autumn skies").split()


def make_prompt(args: argparse.Namespace, index: int):
    """Prompt of request `index`: the same length for every request, distinct when asked."""
    if args.prompt is not None:
        return (f"{index}: " + args.prompt) if args.distinct_prompts else args.prompt
    n = args.prompt_tokens
    shift = index if args.distinct_prompts else 0
    if args.prompt_kind == "ids":
        # ids 1..n, rotated by the request index so that prompts differ from the first token
        # on (ids stay below 1000: valid in any real vocabulary).
        return [1 + (j + shift) % 997 for j in range(n)]
    return " ".join(WORDS[(j + shift) % len(WORDS)] for j in range(n))


def request_max_tokens(args: argparse.Namespace, index: int) -> int:
    """max_tokens of request `index`: args.max_tokens, or with --max-tokens-spread s a value
    drawn uniformly from max_tokens·(1 ± s) by a hash of the index (the same in every run)."""
    if args.max_tokens_spread <= 0:
        return args.max_tokens
    u = ((index * 2654435761 + 12345) % 2**32) / 2**32
    lo, hi = args.max_tokens * (1 - args.max_tokens_spread), args.max_tokens * (1 + args.max_tokens_spread)
    return max(1, round(lo + u * (hi - lo)))


def make_body(args: argparse.Namespace, index: int) -> dict:
    body: dict = {"prompt": make_prompt(args, index), "max_tokens": request_max_tokens(args, index),
                  "temperature": args.temperature, "stream": args.stream}
    if args.model is not None:
        body["model"] = args.model
    if args.top_p is not None:
        body["top_p"] = args.top_p
    if args.top_k is not None:
        body["top_k"] = args.top_k
    if args.seed is not None:
        body["seed"] = args.seed
    if args.stop:
        body["stop"] = args.stop
    if args.ignore_eos:
        body["ignore_eos"] = True
    body.update(args.extra_fields)
    return body


# ---------------------------------------------------------------------------------------
# Levels
# ---------------------------------------------------------------------------------------

def percentile(xs: list[float], q: float) -> Optional[float]:
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    if not xs:
        return None
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def dist(xs: list[float], scale: float = 1.0) -> dict:
    if not xs:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    return {"n": len(xs), "mean": scale * sum(xs) / len(xs),
            "p50": scale * percentile(xs, 50), "p90": scale * percentile(xs, 90),
            "p99": scale * percentile(xs, 99), "max": scale * max(xs)}


class Counter:
    def __init__(self, start: int = 0):
        self.next = start


async def run_workers(args, concurrency: int, n_requests: Optional[int], issue_until: float,
                      hard_stop: float, counter: Counter, results: list[Result],
                      progress_label: str) -> None:
    """`concurrency` workers send requests back to back until n_requests are issued (or,
    when n_requests is None, until issue_until); at hard_stop running requests are cancelled."""
    issued = 0
    show_progress = not args.quiet and sys.stderr.isatty()

    async def worker(position: int):
        nonlocal issued
        if args.stagger > 0:
            await asyncio.sleep(args.stagger * position / concurrency)
        while True:
            if n_requests is not None and issued >= n_requests:
                return
            if time.perf_counter() >= issue_until:
                return
            issued += 1
            res = Result(index=counter.next)
            counter.next += 1
            results.append(res)
            try:
                await asyncio.wait_for(run_request(args, make_body(args, res.index), res),
                                       args.request_timeout)
            except asyncio.TimeoutError:
                res.error = f"request timeout after {args.request_timeout:g} s"
                res.end = time.perf_counter()
                res.unfinished = False
            if n_requests is None and not res.ok and not res.unfinished:
                await asyncio.sleep(0.1)  # soak: a server that fails fast is not hammered
            if show_progress:
                done = sum(1 for r in results if r.end is not None)
                print(f"\r  {progress_label}: {done} done, {issued - done} running   ",
                      end="", file=sys.stderr, flush=True)

    tasks = [asyncio.create_task(worker(i)) for i in range(concurrency)]
    remaining = hard_stop - time.perf_counter()
    done, pending = await asyncio.wait(tasks, timeout=max(0.0, remaining))
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    for t in done:
        if t.exception() is not None:
            raise t.exception()
    if show_progress:
        print(file=sys.stderr)
    if not args.quiet:
        n_ok = sum(1 for r in results if r.ok)
        n_unfinished = sum(1 for r in results if r.unfinished)
        print(f"{progress_label}: {len(results)} sent, {n_ok} ok, "
              f"{len(results) - n_ok - n_unfinished} failed, {n_unfinished} unfinished",
              file=sys.stderr, flush=True)


def summarize(results: list[Result], concurrency: int, planned: Optional[int], wall: float,
              t0: float) -> dict:
    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok and not r.unfinished]
    unfinished = [r for r in results if r.unfinished]
    tokens_ok = sum(r.completion_tokens or 0 for r in ok)
    tokens_unfinished = sum(len(r.text_times) for r in unfinished)
    errors: dict[tuple[int, str], int] = {}
    for r in failed:
        key = (r.status, r.error or "unknown")
        errors[key] = errors.get(key, 0) + 1
    finish: dict[str, int] = {}
    for r in ok:
        finish[str(r.finish_reason)] = finish.get(str(r.finish_reason), 0) + 1
    sources = sorted({r.token_source for r in ok if r.token_source})
    # TTFT, ITL and stream rates: what was seen of ok and of unfinished requests (leaving
    # the unfinished out would keep only the fast ones when a level hits its time limit).
    seen = ok + unfinished
    ttft = [r.ttft for r in seen if r.ttft is not None]
    itl = [g for r in seen for g in r.itls()]
    e2e = [r.e2e for r in ok if r.e2e is not None]
    rates = [x for x in (r.stream_rate() for r in seen) if x is not None]
    out = {
        "concurrency": concurrency,
        "requests_planned": planned,
        "requests_sent": len(results),
        "ok": len(ok),
        "failed": len(failed),
        "unfinished": len(unfinished),
        "not_started": (planned - len(results)) if planned is not None else 0,
        "wall_s": wall,
        "completion_tokens": tokens_ok,
        "completion_tokens_source": sources,
        "text_events_of_unfinished": tokens_unfinished,
        "prompt_tokens_mean": (sum(r.prompt_tokens for r in ok if r.prompt_tokens is not None) /
                               max(1, sum(1 for r in ok if r.prompt_tokens is not None)))
                              if any(r.prompt_tokens is not None for r in ok) else None,
        "throughput_tok_s": tokens_ok / wall if wall > 0 else None,
        "delivered_tok_s": (tokens_ok + tokens_unfinished) / wall if wall > 0 else None,
        "requests_per_s": len(ok) / wall if wall > 0 else None,
        "per_stream_tok_s": dist(rates),
        "ttft_ms": dist(ttft, 1000.0),
        "itl_ms": dist(itl, 1000.0),
        "e2e_s": dist(e2e),
        "finish_reasons": finish,
        "errors": [{"status": s, "message": m, "count": c}
                   for (s, m), c in sorted(errors.items(), key=lambda kv: -kv[1])],
        "requests": [r.record(t0) for r in results],
    }
    return out


async def run_level(args, concurrency: int, counter: Counter, scraper: MetricsScraper) -> dict:
    results: list[Result] = []
    settle = await scraper.settle()
    m0 = await scraper.read()
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    hard_stop = t0 + args.time_limit
    await run_workers(args, concurrency, args.requests, hard_stop, hard_stop, counter, results,
                      f"concurrency {concurrency}")
    # The level ends when the last request finished, or at the hard stop.
    ends = [r.end for r in results if r.end is not None and not r.unfinished]
    t1 = time.perf_counter() if any(r.unfinished for r in results) or not ends else max(ends)
    s = summarize(results, concurrency, args.requests, t1 - t0, t0)
    s["time_limit_s"] = args.time_limit
    s["hit_time_limit"] = s["unfinished"] > 0 or s["not_started"] > 0
    s["loadavg_start"] = load0
    s["loadavg_end"] = os.getloadavg()
    s["server_metrics"] = MetricsScraper.delta(m0, await scraper.read())
    s["settle"] = settle
    return s


async def run_soak(args, concurrency: int, counter: Counter, scraper: MetricsScraper) -> dict:
    results: list[Result] = []
    settle = await scraper.settle()
    m0 = await scraper.read()
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    issue_until = t0 + args.soak
    hard_stop = issue_until + args.drain
    await run_workers(args, concurrency, None, issue_until, hard_stop, counter, results,
                      f"soak at concurrency {concurrency}")
    t1 = time.perf_counter()
    s = summarize(results, concurrency, None, t1 - t0, t0)
    s["soak_s"] = args.soak
    s["drain_s"] = args.drain
    # every failure, in time order
    s["failures"] = [{"t_s": round(r.start - t0, 3), "request": r.index, "status": r.status,
                      "message": r.error} for r in sorted(results, key=lambda r: r.start)
                     if not r.ok and not r.unfinished]
    s["unfinished_requests"] = [{"t_s": round(r.start - t0, 3), "request": r.index,
                                 "text_events": len(r.text_times)}
                                for r in results if r.unfinished]
    # throughput in windows of 10 s (completion tokens of requests finished in the window)
    window = 10.0
    n_win = max(1, math.ceil((t1 - t0) / window))
    tok = [0] * n_win
    fin = [0] * n_win
    for r in results:
        if r.ok and r.end is not None:
            w = min(n_win - 1, int((r.end - t0) / window))
            tok[w] += r.completion_tokens or 0
            fin[w] += 1
    span = [min(window, (t1 - t0) - i * window) for i in range(n_win)]
    s["windows"] = [{"t_s": i * window, "completion_tokens": tok[i], "ok": fin[i],
                     "tok_s": tok[i] / span[i] if span[i] > 0 else None} for i in range(n_win)]
    s["loadavg_start"] = load0
    s["loadavg_end"] = os.getloadavg()
    s["server_metrics"] = MetricsScraper.delta(m0, await scraper.read())
    s["settle"] = settle
    return s


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------

def _f(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def table(levels: list[dict]) -> str:
    head = ("conc", "ok", "fail", "unfin", "unsent", "wall s", "agg tok/s", "deliv tok/s", "stream tok/s",
            "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms", "ITL p99 ms", "E2E p50 s", "E2E p99 s")
    rows = [head]
    for s in levels:
        rows.append((str(s["concurrency"]), str(s["ok"]), str(s["failed"]), str(s["unfinished"]),
                     str(s["not_started"]), _f(s["wall_s"], ".1f"), _f(s["throughput_tok_s"], ".2f"),
                     _f(s["delivered_tok_s"], ".2f"),
                     _f(s["per_stream_tok_s"]["p50"], ".2f"),
                     _f(s["ttft_ms"]["p50"], ".0f"), _f(s["ttft_ms"]["p99"], ".0f"),
                     _f(s["itl_ms"]["p50"], ".0f"), _f(s["itl_ms"]["p99"], ".0f"),
                     _f(s["e2e_s"]["p50"], ".2f"), _f(s["e2e_s"]["p99"], ".2f")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    return "\n".join(lines)


def error_lines(levels: list[dict]) -> list[str]:
    out = []
    for s in levels:
        for e in s["errors"]:
            out.append(f"  concurrency {s['concurrency']}: {e['count']} x status {e['status']}: {e['message']}")
        if s.get("finish_reasons"):
            fr = ", ".join(f"{k} {v}" for k, v in sorted(s["finish_reasons"].items()))
            out.append(f"  concurrency {s['concurrency']}: finish_reason {fr}; tokens from "
                       f"{'/'.join(s['completion_tokens_source']) or '-'}")
    return out


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------

async def amain(args: argparse.Namespace) -> dict:
    meta: dict = {
        "label": args.label,
        "notes": args.notes,
        "url": args.url,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"hostname": socket.gethostname(), "cpus": os.cpu_count(),
                 "platform": platform.platform(), "python": platform.python_version(),
                 "loadavg_start": os.getloadavg()},
        "settings": {k: v for k, v in vars(args).items()
                     if k not in ("json_out", "quiet", "extra_fields", "host", "port", "base_path",
                                  "meta", "notes")},
    }
    # Health and model (a failure here is reported but not fatal: the levels show it too).
    try:
        status, body = await http_get(args.host, args.port, args.base_path + "/health")
        meta["health"] = {"status": status, "body": body.decode("utf-8", "replace")[:200]}
    except (OSError, HTTPError, asyncio.TimeoutError) as e:
        meta["health"] = {"status": 0, "body": f"{type(e).__name__}: {e}"}
    try:
        status, body = await http_get(args.host, args.port, args.base_path + "/v1/models")
        models = json.loads(body).get("data", []) if status == 200 else []
        meta["models"] = [m.get("id") for m in models if isinstance(m, dict)]
    except (OSError, HTTPError, asyncio.TimeoutError, ValueError, AttributeError) as e:
        meta["models"] = []
        meta["models_error"] = f"{type(e).__name__}: {e}"
    if args.model is None and meta.get("models"):
        args.model = meta["models"][0]
    meta["model"] = args.model
    meta["example_request"] = make_body(args, 0)

    counter = Counter()
    if args.warmup > 0:
        warm: list[Result] = []
        for _ in range(args.warmup):
            r = Result(index=counter.next)
            counter.next += 1
            try:
                await asyncio.wait_for(run_request(args, make_body(args, r.index), r),
                                       args.request_timeout)
            except asyncio.TimeoutError:
                r.error = "warm-up request timed out"
            warm.append(r)
        meta["warmup"] = [{"ok": r.ok, "status": r.status, "error": r.error,
                           "e2e_s": r.e2e, "completion_tokens": r.completion_tokens} for r in warm]
        if not args.quiet:
            for r in warm:
                print(f"warm-up: {'ok' if r.ok else 'FAILED'} status {r.status} "
                      f"{_f(r.e2e, '.2f')} s {r.completion_tokens} tokens"
                      f"{'' if r.ok else ': ' + str(r.error)}", file=sys.stderr)

    scraper = MetricsScraper(args)
    levels = []
    for c in args.levels:
        levels.append(await run_level(args, c, counter, scraper))
    out = {"meta": meta, "levels": levels}
    if args.soak > 0:
        out["soak"] = await run_soak(args, max(args.levels), counter, scraper)
    meta["metrics_error"] = scraper.error
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    meta["host"]["loadavg_end"] = os.getloadavg()
    return out


def event_loop(choice: str) -> str:
    """Installs the event loop asked for; returns the one that runs ("uvloop" or "asyncio")."""
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop  # optional: the standard library's loop otherwise
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("loadgen.py: --loop uvloop: uvloop is not installed (pip install uvloop), "
                             "or use --loop asyncio")
        return "asyncio"
    uvloop.install()
    return "uvloop"


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.loop = event_loop(args.loop)
    out = asyncio.run(amain(args))
    levels = out["levels"]
    title = args.label or args.url
    print(f"{title}: prompt {'text' if args.prompt is not None else f'{args.prompt_tokens} {args.prompt_kind}'}, "
          f"max_tokens {args.max_tokens}, temperature {args.temperature:g}, "
          f"stream {'on' if args.stream else 'off'}, {args.requests} requests/level, "
          f"time limit {args.time_limit:g} s; started {out['meta']['started']}, "
          f"load average {out['meta']['host']['loadavg_start'][0]:.2f} on {os.cpu_count()} cpus")
    print(table(levels))
    for line in error_lines(levels):
        print(line)
    bad = sum(s["failed"] + s["unfinished"] + s["not_started"] for s in levels)
    if "soak" in out:
        s = out["soak"]
        print(f"soak {s['soak_s']:g} s at concurrency {s['concurrency']}: {s['ok']} ok, "
              f"{s['failed']} failed, {s['unfinished']} unfinished; "
              f"{_f(s['throughput_tok_s'], '.2f')} tok/s, TTFT p99 {_f(s['ttft_ms']['p99'], '.0f')} ms")
        for f in s["failures"][:50]:
            print(f"  failure at {f['t_s']:.1f} s (request {f['request']}): status {f['status']}: {f['message']}")
        if len(s["failures"]) > 50:
            print(f"  ... {len(s['failures']) - 50} more failures (all in the JSON)")
        for e in s["errors"]:
            print(f"  {e['count']} x status {e['status']}: {e['message']}")
        w = " ".join(_f(x["tok_s"], ".1f") for x in s["windows"])
        print(f"  tok/s per 10 s window: {w}")
        bad += s["failed"] + s["unfinished"]
    if args.json_out:
        d = os.path.dirname(os.path.abspath(args.json_out))
        os.makedirs(d, exist_ok=True)
        with open(args.json_out, "w") as fh:
            json.dump(out, fh, indent=1)
            fh.write("\n")
        print(f"wrote {args.json_out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
