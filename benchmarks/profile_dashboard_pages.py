"""CPU of one dashboard script run per page, cold and warm, under Streamlit's AppTest (no browser).

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.profile_dashboard_pages                      # builds the demo data (~1 min)
    .venv/bin/python -m benchmarks.profile_dashboard_pages --prometheus-url URL --store-url sqlite:///... \
        [--deploy ID] [--pages deploy] [--profile deploy] [--root OTHER_CHECKOUT | --before GIT_REV]

Wall time on a shared machine is noise; the CPU a script run takes is not (much). For each
page this runs the script once in a fresh process-wide cache ("cold": Prometheus and store
answers fetched, modules imported) and once more ("warm": every answer cached, what a returning
visitor's rerun costs), and prints the CPU seconds of the process and the bytes of each Plotly
figure sent. ``--profile PAGE`` prints the cProfile of that page's script thread (cumulative).
Run it on two checkouts (``git worktree add``) to compare a change.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGES: dict[str, tuple[str, dict[str, Any]]] = {
    "deploys": ("views/deploys.py", {"range": "7d"}),
    "deploy": ("views/deploy.py", {"deploy": "{deploy}"}),
    "latency": ("views/latency.py", {"svc": "checkout", "lat_range": "24h", "pct": ["p50", "p90", "p99", "p99.9"]}),
    "errors": ("views/errors.py", {"svc": "checkout", "err_range": "24h"}),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prometheus-url")
    ap.add_argument("--store-url")
    ap.add_argument("--deploy", help="deploy id for the Deploy page (default: verify the demo deploys until one "
                                     "fails and store its verdict, as bench_dashboard_speed does)")
    ap.add_argument("--profile", choices=sorted(PAGES), help="print this page's profile (warm run)")
    ap.add_argument("--lines", type=int, default=40)
    ap.add_argument("--pages", nargs="+", choices=sorted(PAGES), default=list(PAGES),
                    help="pages to run, in this order (the first one also pays the module imports)")
    ap.add_argument("--root", type=Path, default=ROOT,
                    help="checkout whose dashboard/app.py runs (put it first on PYTHONPATH too)")
    ap.add_argument("--before", metavar="GIT_REV",
                    help="first run the same pages as of this git revision (`git archive` into a temporary "
                         "directory, run in its own process from that tree), then this checkout")
    args = ap.parse_args()

    from benchmarks.bench_dashboard_speed import build_demo, verify_one_failing

    server = None
    if args.prometheus_url and args.store_url:
        prom_url, store_url = args.prometheus_url, args.store_url
    else:
        print("building the demo data (3 days, 3 services) ...", flush=True)
        prom_url, store_url, server = build_demo(Path(tempfile.mkdtemp(prefix="profile-pages-")))
    deploy = args.deploy or verify_one_failing(prom_url, store_url) or ""
    if args.before:
        import subprocess
        import sys

        from benchmarks.bench_dashboard_speed import export_revision

        before = export_revision(args.before, Path(tempfile.mkdtemp(prefix="profile-before-")) / "tree")
        print(f"--- as of {args.before}", flush=True)
        subprocess.run([sys.executable, "-m", "benchmarks.profile_dashboard_pages", "--prometheus-url", prom_url,
                        "--store-url", store_url, "--deploy", deploy, "--pages", *args.pages, "--root", str(before),
                        "--lines", str(args.lines), *(["--profile", args.profile] if args.profile else [])],
                       cwd=before, env={**os.environ, "PYTHONPATH": str(before)}, check=False)
        print("--- this checkout", flush=True)
    os.environ.pop("ANALYZERS_CONFIG", None)
    os.environ.update({"PROMETHEUS_URL": prom_url, "DEPLOY_STORE_URL": store_url})

    from streamlit.runtime.scriptrunner import script_runner
    from streamlit.testing.v1 import AppTest

    profiles: list[cProfile.Profile] = []
    original = script_runner.ScriptRunner._run_script

    def profiled(self: Any, *a: Any, **k: Any) -> Any:  # the script runs on its own thread
        pr = cProfile.Profile()
        profiles.append(pr)
        pr.enable()
        try:
            return original(self, *a, **k)
        finally:
            pr.disable()

    script_runner.ScriptRunner._run_script = profiled  # type: ignore[method-assign]
    try:
        print(f"{'page':<9} {'run':<5} {'CPU s':>6} {'wall s':>7}  figures (kB)")
        for name in args.pages:
            script, query = PAGES[name]
            q = {k: (v.format(deploy=deploy) if isinstance(v, str) else v) for k, v in query.items()}
            for run in ("cold", "warm"):
                at = AppTest.from_file(str(args.root.resolve() / "dashboard" / "app.py"), default_timeout=300)
                at.context = {"timezone": "America/New_York"}
                at.query_params.update(q)
                c0, t0 = time.process_time(), time.perf_counter()
                at.switch_page(script).run()
                cpu, wall = time.process_time() - c0, time.perf_counter() - t0
                if at.exception:
                    print(f"{name}: {at.exception}")
                figs = ", ".join(f"{len(c.proto.spec) / 1e3:.0f}" for c in at.get("plotly_chart"))
                print(f"{name:<9} {run:<5} {cpu:6.2f} {wall:7.2f}  {figs}", flush=True)
                if run == "warm" and args.profile == name:
                    pstats.Stats(profiles[-1]).sort_stats("cumulative").print_stats(args.lines)
    finally:
        script_runner.ScriptRunner._run_script = original  # type: ignore[method-assign]
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
