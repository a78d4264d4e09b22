#!/usr/bin/env python3
"""Checks loadgen.py against fake_server.py, whose timings and failures are known.

    python3 Benchmarks/serving/test_loadgen.py        # about 15 s, standard library only

Timing bounds are loose at the top (a busy machine delays events) and tight at the
bottom (no event can arrive before the server's sleep).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_server  # noqa: E402
import loadgen  # noqa: E402
import plot  # noqa: E402


def start(**kw) -> tuple[object, str]:
    cfg = argparse.Namespace(port=0, ttft_ms=0.0, itl_ms=0.0, fail_every=0, drop_every=0)
    for k, v in kw.items():
        setattr(cfg, k, v)
    srv = fake_server.serve(cfg)
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def stop(srv) -> None:
    srv.shutdown()
    srv.server_close()


def run(url: str, *extra: str) -> dict:
    args = loadgen.parse_args(["--url", url, "--quiet", "--warmup", "0", *extra])
    return asyncio.run(loadgen.amain(args))


class LoadgenTests(unittest.TestCase):
    def test_timings_match_the_server(self):
        srv, url = start(ttft_ms=100, itl_ms=10)
        try:
            out = run(url, "--concurrency", "1,4", "--requests", "8", "--max-tokens", "8")
        finally:
            stop(srv)
        self.assertEqual(out["meta"]["model"], "fake")
        for s in out["levels"]:
            self.assertEqual((s["ok"], s["failed"], s["unfinished"], s["not_started"]), (8, 0, 0, 0))
            self.assertEqual(s["completion_tokens"], 64)
            self.assertEqual(s["completion_tokens_source"], ["usage"])
            self.assertEqual(s["finish_reasons"], {"length": 8})
            self.assertTrue(100 <= s["ttft_ms"]["p50"] < 400, s["ttft_ms"])
            self.assertEqual(s["itl_ms"]["n"], 8 * 7)
            self.assertTrue(10 <= s["itl_ms"]["p50"] < 60, s["itl_ms"])
            # end-to-end >= ttft + 7 gaps; per-stream rate <= 1 / 10 ms
            self.assertTrue(0.17 <= s["e2e_s"]["p50"] < 1.5, s["e2e_s"])
            self.assertTrue(10 < s["per_stream_tok_s"]["p50"] <= 100.5, s["per_stream_tok_s"])
            # the server's own count of tokens sent, read from /metrics around the level
            self.assertEqual(s["server_metrics"]["change"], {"fake_tokens_generated_total": 64.0})
        c1, c4 = out["levels"]
        # Four streams at once on a server whose requests do not interfere: ~4x throughput.
        self.assertGreater(c4["throughput_tok_s"], 2.0 * c1["throughput_tok_s"])
        body = out["meta"]["example_request"]
        self.assertEqual(body["prompt"], list(range(1, 33)))
        self.assertEqual((body["max_tokens"], body["temperature"], body["stream"]), (8, 0.0, True))

    def test_spread_lengths_and_staggered_starts(self):
        args = loadgen.parse_args(["--url", "http://127.0.0.1:1", "--max-tokens", "40", "--max-tokens-spread", "0.5"])
        lengths = [loadgen.request_max_tokens(args, i) for i in range(400)]
        self.assertTrue(all(20 <= n <= 60 for n in lengths), (min(lengths), max(lengths)))
        self.assertGreater(len(set(lengths)), 30)  # spread, not a few values
        self.assertAlmostEqual(sum(lengths) / len(lengths), 40, delta=2)
        self.assertEqual(lengths, [loadgen.request_max_tokens(args, i) for i in range(400)])  # reproducible
        srv, url = start(ttft_ms=1000, itl_ms=0)
        try:
            out = run(url, "--concurrency", "4", "--requests", "4", "--max-tokens", "4", "--stagger", "0.6")
        finally:
            stop(srv)
        level = out["levels"][0]
        self.assertEqual(level["ok"], 4)
        # Each request takes 1 s, so each stream sends one; the fourth starts 3/4 of 0.6 s
        # after the first: the level lasts at least 0.45 + 1 s (all at once: 1 s).
        self.assertGreaterEqual(level["wall_s"], 1.4)
        with contextlib.redirect_stderr(io.StringIO()), self.assertRaises(SystemExit):
            loadgen.parse_args(["--url", "http://127.0.0.1:1", "--max-tokens-spread", "1.5"])

    def test_failures_are_grouped(self):
        # Arrivals 1..20 in order (concurrency 1): 503 at 4, 8, 12, 16, 20; cut off at 5, 10, 15.
        srv, url = start(fail_every=4, drop_every=5)
        try:
            out = run(url, "--concurrency", "1", "--requests", "20", "--max-tokens", "4")
        finally:
            stop(srv)
        s = out["levels"][0]
        self.assertEqual((s["ok"], s["failed"], s["unfinished"]), (12, 8, 0))
        errors = {(e["status"], e["message"]): e["count"] for e in s["errors"]}
        self.assertEqual(errors[(503, "server busy (fake)")], 5)
        self.assertEqual(errors[(200, "HTTPError: connection closed inside a chunked body")], 3)

    def test_time_limit_counts_unfinished_and_unsent(self):
        # 20 tokens 50 ms apart: about 1 s per request; 2 at a time for 1.5 s.
        srv, url = start(itl_ms=50)
        try:
            out = run(url, "--concurrency", "2", "--requests", "10", "--max-tokens", "20",
                      "--time-limit", "1.5")
        finally:
            stop(srv)
        s = out["levels"][0]
        self.assertEqual(s["ok"] + s["failed"] + s["unfinished"] + s["not_started"], 10)
        self.assertEqual((s["ok"], s["failed"], s["unfinished"], s["not_started"]), (2, 0, 2, 6))
        self.assertTrue(s["hit_time_limit"])
        self.assertTrue(1.5 <= s["wall_s"] < 2.5, s["wall_s"])
        # the unfinished pair had ~10 of their 20 tokens: TTFT and ITL count them, e2e not
        self.assertEqual(s["ttft_ms"]["n"], 4)
        self.assertEqual(s["e2e_s"]["n"], 2)
        seen = s["text_events_of_unfinished"]
        self.assertTrue(12 <= seen <= 22, seen)
        self.assertEqual(s["itl_ms"]["n"], 2 * 19 + seen - 2)
        self.assertAlmostEqual(s["delivered_tok_s"], (40 + seen) / s["wall_s"])
        recs = s["requests"]
        self.assertEqual(len(recs), 4)
        self.assertEqual(sorted(len(r["text_event_s"]) for r in recs if r["ok"]), [20, 20])

    def test_next_level_waits_for_cancelled_requests(self):
        # The fake server notices a closed connection only when a write fails (like
        # llama-server): the first write after the close still succeeds, so its
        # requests run on until t = 4 s, 3 s after the first level's hard stop.
        srv, url = start(itl_ms=2000)
        try:
            out = run(url, "--concurrency", "2,1", "--requests", "2", "--max-tokens", "3",
                      "--time-limit", "1")
        finally:
            stop(srv)
        first, second = out["levels"]
        self.assertEqual(first["unfinished"], 2)
        self.assertEqual(first["settle"], {"checked": True, "metric": "fake_requests_running",
                                           "busy_before": 0.0, "wait_s": first["settle"]["wait_s"],
                                           "timed_out": False})
        self.assertEqual(second["settle"]["busy_before"], 2.0)
        self.assertTrue(1.0 <= second["settle"]["wait_s"] < 6.0, second["settle"])

    def test_non_streaming_and_soak(self):
        srv, url = start(ttft_ms=20, itl_ms=5, fail_every=3)
        try:
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "r.json")
                with contextlib.redirect_stdout(io.StringIO()):
                    rc = loadgen.main(["--url", url, "--quiet", "--warmup", "0", "--no-stream",
                                       "--concurrency", "1,2", "--requests", "3",
                                       "--max-tokens", "4", "--soak", "1", "--json", path])
                with open(path) as fh:
                    out = json.load(fh)
        finally:
            stop(srv)
        self.assertEqual(rc, 1)  # the 503s make the run fail
        for s in out["levels"]:
            self.assertEqual(s["ok"] + s["failed"], 3)
            self.assertIsNone(s["ttft_ms"]["p50"])
            self.assertEqual(s["completion_tokens"], 4 * s["ok"])
        soak = out["soak"]
        self.assertEqual(soak["concurrency"], 2)
        self.assertGreater(soak["ok"], 0)
        self.assertEqual(len(soak["failures"]), soak["failed"])
        self.assertTrue(all(f["status"] == 503 for f in soak["failures"]))

    def test_refuses_non_loopback_hosts(self):
        for url in ("http://192.168.1.5:8080", "http://example.com", "https://127.0.0.1:8080"):
            with contextlib.redirect_stderr(io.StringIO()), self.assertRaises(SystemExit):
                loadgen.parse_args(["--url", url])
        for url in ("http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1"):
            self.assertIn(loadgen.parse_args(["--url", url]).host, loadgen.LOOPBACK_HOSTS)

    def test_plot_draws_one_line_per_run_and_panel(self):
        import xml.dom.minidom
        def level(c, thr, ttft, failed=0):
            return {"concurrency": c, "throughput_tok_s": thr, "delivered_tok_s": thr, "ttft_ms": {"p99": ttft},
                    "failed": failed, "unfinished": 0, "not_started": 0}
        runs = [("a", [level(1, 10, 100), level(4, 30, 150), level(16, 50, 400, failed=1)]),
                ("b", [level(1, 12, 90), level(4, 20, 300)])]
        doc = xml.dom.minidom.parseString(plot.render(runs, "t"))
        self.assertEqual(len(doc.getElementsByTagName("polyline")), 4)
        circles = doc.getElementsByTagName("circle")
        self.assertEqual(len(circles), 10)
        self.assertEqual(sum(c.getAttribute("fill") == "white" for c in circles), 2)  # the failed level

    def test_prometheus_text(self):
        text = ('# HELP a x\n# TYPE a counter\na_total 3\nb{slot="0"} 1.5e3\n'
                'c{le="+Inf"} 7 1700000000\nd 2 1700000000\nbad line here\n')
        self.assertEqual(loadgen.parse_prometheus(text),
                         {"a_total": 3.0, 'b{slot="0"}': 1500.0, 'c{le="+Inf"}': 7.0, "d": 2.0})

    def test_percentile_interpolates_like_numpy(self):
        xs = [5.0, 1.0, 3.0, 2.0, 4.0]
        self.assertEqual(loadgen.percentile(xs, 50), 3.0)
        self.assertAlmostEqual(loadgen.percentile(xs, 99), 4.96)
        self.assertAlmostEqual(loadgen.percentile(xs, 10), 1.4)
        self.assertIsNone(loadgen.percentile([], 50))


if __name__ == "__main__":
    unittest.main()
