"""`python -m analyzers demo` as a newcomer runs it (on the small scenario to stay fast): all the
components come up on the chosen ports, verdicts match the scenario truth, the data is live (the
simulator is scraped with exemplars, remote write is refused), a deploy asked for while it runs
serves two versions at once and gets its verdict from the worker, canaries gated by the receiver
(a regressed one rolled back at 10%, a no-op one promoted), a second run reuses what is there,
and --stop ends what was left running."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.receiver import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _demo(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analyzers", "demo", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _query(prom: str, query: str, **params: Any) -> list[dict[str, Any]]:
    r = requests.post(f"{prom}/api/v1/{'query_range' if 'step' in params else 'query'}",
                      data={"query": query, **params}, timeout=10)
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["result"])


def _poll(what: str, fn: Any, timeout: float, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s")


# the live part waits for real canary steps (2 x 120 s) and the worker's verdicts: its own polls
# carry the deadlines and say what did not happen, so the global 300 s cap is lifted here
@pytest.mark.timeout(900)
def test_demo_brings_up_everything_live_and_reuses_it(tmp_path: Path) -> None:
    ports = [str(free_port()) for _ in range(4)]
    data = tmp_path / "demo"
    args = ["--scenario", "small", "--data-dir", str(data), "--prometheus-port", ports[0],
            "--receiver-port", ports[1], "--dashboard-port", ports[2], "--simulator-port", ports[3],
            "--scrape-interval", "2s", "--deploy-every", "0", "--quick-checks", "--canary-step", "120", "--no-block"]
    prom, receiver = f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"
    try:
        first = _demo(*args)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        verdicts = re.findall(r"\[demo\]\s+(PASS|FAIL|INCONCLUSIVE)\s+.*\(scenario truth: (pass|fail)\)", first.stdout)
        assert len(verdicts) == 6, first.stdout
        assert all(got.lower() == want for got, want in verdicts), first.stdout
        assert _up(f"{prom}/-/ready")
        assert _up(f"{receiver}/healthz")
        assert _up(f"http://127.0.0.1:{ports[2]}/_stcore/health")
        assert f"http://127.0.0.1:{ports[2]}" in first.stdout
        assert f"export ANALYZERS_CONFIG={data / 'config.toml'}" in first.stdout

        # live: the simulator's samples reach now, with exemplars; nobody on loopback can remote-write
        newest = _poll("a scrape of the simulator", lambda: _query(prom, "max(timestamp(http_requests_total))"), 30)
        assert float(newest[0]["value"][1]) > time.time() - 30
        now = time.time()
        exemplars = _poll("stored exemplars", lambda: requests.get(f"{prom}/api/v1/query_exemplars", params={
            "query": 'http_request_duration_seconds_bucket{service="checkout"}', "start": now - 300,
            "end": now + 60}, timeout=10).json()["data"], 30)
        trace_ids = {e["labels"]["trace_id"] for s in exemplars for e in s["exemplars"]}
        assert len(trace_ids) > 5 and all(re.fullmatch(r"[0-9a-f]{32}", t) for t in trace_ids)
        write = requests.post(f"{prom}/api/v1/write", data=b"\x00", timeout=5,
                              headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"})
        assert write.status_code >= 400  # the remote-write receiver is off

        # a deploy while it runs: both versions serve during the rollout, the worker verifies it
        deploy = _demo("deploy", "--service", "checkout", "--effect", "errors x5", "--rollout", "20",
                       "--data-dir", str(data), timeout=120)
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        m = re.search(r"deploying checkout (\S+) -> (\S+) \(errors x5\), deploy id (\S+);", deploy.stdout)
        assert m, deploy.stdout
        old, new, deploy_id = m.groups()
        assert any(old in line and new in line for line in deploy.stdout.splitlines() if "serving:" in line)
        end = time.time()
        both = _query(prom, 'count(count by (version) (rate(http_requests_total{service="checkout"}[5s]) > 0))',
                      start=end - 40, end=end, step=1)
        assert max(float(v) for _, v in both[0]["values"]) == 2, both

        # canaries at 10%, 50%, then 100%, gated over HTTP by the receiver (Flagger's rollout hook)
        canaries = {}
        for service, effect in (("search", "errors x20"), ("payments", "noop")):
            started = _demo("deploy", "--service", service, "--effect", effect, "--strategy", "canary", "--no-wait",
                            "--data-dir", str(data), timeout=60)
            assert started.returncode == 0, started.stdout + started.stderr
            canaries[service] = re.search(r"deploy id (\S+);", started.stdout).group(1)  # type: ignore[union-attr]

        second = _demo(*args)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert "reusing demo data" in second.stdout
        assert second.stdout.count("already answering") == 4

        def verdict() -> dict[str, Any] | None:
            body = requests.get(f"{receiver}/v1/deploys/{deploy_id}", timeout=5).json()
            return body.get("verdict")

        v = _poll("the worker's verdict on the live deploy", verdict, 400, interval=3)
        assert v["overall"] == "fail", v
        assert any(m["metric"] == "error_ratio" and m["outcome"] == "regressed" for m in v["metrics"]), v

        def finished() -> dict[str, Any] | None:
            state = json.loads((data / "simulator" / "state.json").read_text())
            done = {d["deploy_id"]: d for d in state["deploys"] if d["status"] in ("succeeded", "rolled_back")}
            return done if all(c in done for c in canaries.values()) else None

        done = _poll("both canaries to finish", finished, 400, interval=2)
        regressed, noop = done[canaries["search"]], done[canaries["payments"]]
        assert regressed["status"] == "rolled_back", regressed
        assert regressed["canary"]["weight"] == pytest.approx(0.10)  # caught at 10%
        assert regressed["canary"]["gate"][-1]["status"] == 409 and regressed["canary"]["gate"][-1]["verdict"] == "fail"
        assert noop["status"] == "succeeded", noop  # promoted: no gate answer failed it at 10% or 50%
        assert noop["canary"]["weight"] == pytest.approx(0.50)
        assert all(g["status"] == 200 for g in noop["canary"]["gate"])
        for service, status in (("search", "rolled_back"), ("payments", "succeeded")):
            stored = requests.get(f"{receiver}/v1/deploys/{canaries[service]}", timeout=5).json()["deploy"]
            assert stored["status"] == status  # the demo sent the rollback / success event, signed
        state = json.loads((data / "simulator" / "state.json").read_text())
        assert {p["version"] for p in state["services"]["search"]["pods"]} == {regressed["from"]}
        assert {p["version"] for p in state["services"]["payments"]["pods"]} == {noop["to"]}

        listed = requests.get(f"{receiver}/v1/deploys", timeout=5).json()
        items = listed if isinstance(listed, list) else listed.get("deploys", listed.get("items", []))
        assert len(items) == 9  # six scenario deploys (the second run's were duplicates) and three live ones
    finally:
        _demo("--stop", "--data-dir", str(data))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (_up(f"{receiver}/healthz") or _up(f"http://127.0.0.1:{ports[3]}/metrics")):
        time.sleep(0.3)
    assert not _up(f"{receiver}/healthz")
    assert not _up(f"http://127.0.0.1:{ports[3]}/metrics")
