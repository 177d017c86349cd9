"""``wait_until_up``: the one readiness poll shared by the demo, Prometheus and the test servers."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time

from analyzers.demo.promserver import free_port, wait_until_up


def test_a_server_that_answers_is_up() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert wait_until_up(f"http://127.0.0.1:{server.server_address[1]}/", timeout_s=5) is None
    finally:
        server.shutdown()


def test_a_process_that_exits_stops_the_wait_early_with_its_code() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    t0 = time.monotonic()
    why = wait_until_up(f"http://127.0.0.1:{free_port()}/", proc=proc, timeout_s=30)
    assert why == "exited with code 3 before it was ready"
    assert time.monotonic() - t0 < 2  # did not sit out the 30 s


def test_nothing_listening_times_out_with_the_time_named() -> None:
    why = wait_until_up(f"http://127.0.0.1:{free_port()}/", timeout_s=0.3, interval_s=0.05)
    assert why == "not ready after 0.3 s"
