"""deploy/: the example cluster settings load, and the compose file, the Prometheus scrape list
and the systemd units agree with them (no Docker daemon runs here: the compose file and the
Dockerfile are checked as files; the systemd units with `systemd-analyze verify`)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from voice.app import cluster
from voice.app.settings import IvrSettings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
EXAMPLE = DEPLOY / "ivr.cluster.yaml"
COMPOSE = DEPLOY / "docker" / "compose.yaml"
SYSTEMD = DEPLOY / "systemd"


@pytest.fixture(scope="module")
def plan() -> cluster.ClusterPlan:
    return cluster.plan(EXAMPLE, host="ivr1")


def test_the_example_cluster_settings_load_and_give_each_worker_its_own_settings(plan):
    settings = IvrSettings.load(EXAMPLE)
    assert settings.server.store_url.startswith("postgresql+psycopg://")
    assert settings.handoff.db_url == settings.server.store_url
    assert settings.models.llm_url.endswith("/v1")
    assert settings.cluster.workers == len(plan.workers) == 3
    ports = set()
    for worker in plan.workers:  # worker_settings refuses what a worker would refuse to load
        config = cluster.worker_settings(plan, worker)
        ports |= {config["sip"]["port"], config["server"]["http_port"]}
        assert config["server"]["store_url"] == settings.server.store_url  # shared, not per file
    assert len(ports) == 2 * len(plan.workers)


def test_the_compose_file_runs_the_example_cluster(plan):
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    workers = {name for name in services if name.startswith("worker-")}
    assert workers == {f"worker-{w.index}" for w in plan.workers}
    assert {"postgres", "edge", "prometheus", "config"} <= set(services)
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on unknown service {needed}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name} mounts missing {source}"
    build = services["config"]["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).is_file()
    assert services["config"]["command"][-2:] == ["cluster", "--generate-only"]
    assert "kamailio.cfg" in " ".join(services["edge"]["command"])
    for worker in plan.workers:
        service = services[f"worker-{worker.index}"]
        config = Path(plan.settings.cluster.directory) / f"worker-{worker.index}.yaml"
        assert service["command"] == ["--config", str(config), "serve"]
        assert service["depends_on"]["config"]["condition"] == "service_completed_successfully"
        assert service["healthcheck"]["test"][-1] == \
            f"http://127.0.0.1:{worker.http_port}/healthz"
    # every IVR_* override names a real setting
    for key in services["worker-1"]["environment"]:
        if key.startswith("IVR_"):
            section, field = key.removeprefix("IVR_").lower().split("__")
            assert field in type(getattr(plan.settings, section)).model_fields, key


def test_prometheus_scrapes_every_workers_metrics(plan):
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "ivr-workers"]
    assert job["metrics_path"] == "/metrics"
    assert '@app.get("/metrics")' in (ROOT / "voice" / "app" / "http.py").read_text()
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert targets == [f"127.0.0.1:{w.http_port}" for w in plan.workers]


def test_the_image_pins_the_projects_torch():
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [torch] = [p for p in pins if p.startswith("torch==")]
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert re.search(rf"pip install {re.escape(torch)} ", dockerfile)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_systemd_units_verify(tmp_path):
    """`systemd-analyze verify` on a copy whose venv path is this checkout's (the units name
    /opt/voice-ivr, where the install guide puts it); the worker template as instance 1."""
    venv_ivr = ROOT / ".venv" / "bin" / "ivr"
    if not venv_ivr.exists() or shutil.which("kamailio") is None:
        pytest.skip("needs this checkout's .venv and kamailio (make setup)")
    units = []
    for unit in SYSTEMD.iterdir():
        text = unit.read_text().replace("/opt/voice-ivr/.venv/bin/ivr", str(venv_ivr))
        text = text.replace("/usr/sbin/kamailio", shutil.which("kamailio"))
        (tmp_path / unit.name).write_text(text)
        units.append(unit.name)
    assert "ivr-worker@.service" in units
    (tmp_path / "ivr-worker@1.service").symlink_to(tmp_path / "ivr-worker@.service")
    names = [n for n in units if n != "ivr-worker@.service"] + ["ivr-worker@1.service"]
    done = subprocess.run(["systemd-analyze", "verify", *[str(tmp_path / n) for n in names]],
                          capture_output=True, text=True, timeout=60)
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if str(tmp_path) in line or "ivr" in line]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr
