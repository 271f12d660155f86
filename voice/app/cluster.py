"""`ivr cluster`: a Kamailio edge in front of N `ivr serve` workers on one host, run by supervisord.

Nothing here balances calls or manages processes itself: Kamailio's dispatcher module spreads
the calls, probes the workers and fails over; supervisord starts, stops and restarts the
processes. This module only turns the IVR settings (section ``cluster``) into their
configurations, from the templates in ``deploy/kamailio/`` and ``deploy/supervisor/``:

- ``kamailio.cfg`` and ``dispatcher.list`` for the edge;
- ``worker-<i>.yaml`` for each worker: the base settings with its own SIP, RTP and HTTP ports,
  ``server.worker_id``, calls accepted from the edge only, agent legs dialled through the edge;
- ``supervisord.conf`` running the edge and the workers (``numprocs``: supervisor's own worker
  template, like systemd's ``ivr-worker@.service``).

Workers do not share model memory: each loads its own. Forking them from one parent after the
models are loaded (copy-on-write) was not attempted: threads do not survive a fork and the
model runtimes start thread pools as they load (PyTorch/OpenMP, CTranslate2, onnxruntime), and
pjsua2 would have to be created after it. The seam for sharing is ``models.inference_url``
(one inference process per host). ``bench/scale.py`` measures what a worker and a call cost.
"""

from __future__ import annotations

import copy
import glob
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from voice.app.settings import IvrSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DISPATCHER_SET = 1
# Where Debian, RPM and source installs put Kamailio's modules (the first holding dispatcher.so
# is used); ``kamailio`` itself only knows the one it was built with.
DEBIAN_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"
MODULE_DIRS = (DEBIAN_MODULES, "/usr/lib/*/kamailio/modules",
               "/usr/lib64/kamailio/modules", "/usr/lib/kamailio/modules",
               "/usr/local/lib64/kamailio/modules", "/usr/local/lib/kamailio/modules")


@dataclass(frozen=True)
class Worker:
    """One `ivr serve` of the cluster (``index`` from 1)."""

    index: int
    sip_port: int
    http_port: int
    rtp_port: int
    worker_id: str
    config_path: Path

    @property
    def sip_uri(self) -> str:
        return f"sip:{self._host}:{self.sip_port}"

    _host: str = "127.0.0.1"


@dataclass(frozen=True)
class ClusterPlan:
    """What `ivr cluster` writes and runs."""

    settings: IvrSettings
    base: dict[str, Any]  # the settings file as written, so workers inherit only what was set
    directory: Path
    workers: tuple[Worker, ...]

    @property
    def kamailio_cfg(self) -> Path:
        return self.directory / "kamailio.cfg"

    @property
    def dispatcher_list(self) -> Path:
        return self.directory / "dispatcher.list"

    @property
    def supervisord_conf(self) -> Path:
        return self.directory / "supervisord.conf"

    @property
    def control_socket(self) -> Path:
        return self.directory / "kamailio_ctl"

    @property
    def edge_uri(self) -> str:
        c = self.settings.cluster
        return f"sip:{c.edge_host}:{c.edge_port}"

    @property
    def supervisorctl(self) -> list[str]:
        return [shutil.which("supervisorctl") or "/usr/bin/supervisorctl", "-c",
                str(self.supervisord_conf)]

    def pid(self, worker: Worker | str) -> int:
        """The process id supervisord reports for ``worker`` (or a program name, 'edge')."""
        name = worker if isinstance(worker, str) else f"worker:worker_{worker.index}"
        done = subprocess.run([*self.supervisorctl, "pid", name], capture_output=True,
                              text=True, timeout=30)
        return int(done.stdout.strip() or 0)

    def dispatcher_states(self) -> dict[str, str]:
        """Kamailio's view of each worker, by SIP URI: its dispatcher flags ('AP' active and
        probed, 'IP' inactive and probed, 'DX' disabled), from ``kamcmd dispatcher.list``."""
        kamcmd = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
        done = subprocess.run([kamcmd, "-s", f"unix:{self.control_socket}", "dispatcher.list"],
                              capture_output=True, text=True, timeout=30)
        states, uri = {}, None
        for line in done.stdout.splitlines():
            key, _, value = line.strip().partition(": ")
            if key == "URI":
                uri = value
            elif key == "FLAGS" and uri:
                states[uri] = value
        return states

    def ready(self, worker: Worker) -> bool:
        """Whether ``worker`` has loaded its models and serves (its /healthz answers)."""
        url = f"http://{self.settings.server.http_host}:{worker.http_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def wait_active(self, timeout_s: float = 300.0) -> None:
        """Until every worker serves and answers Kamailio's probes (a destination starts out
        active in Kamailio before its first probe, so both are asked)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.ready(w) for w in self.workers):
                break
            time.sleep(1.0)
        time.sleep(self.settings.cluster.probe_interval_s + 0.5)  # a probe since they serve
        while time.monotonic() < deadline:
            states = self.dispatcher_states()
            if len(states) == len(self.workers) and all(f.startswith("A")
                                                        for f in states.values()):
                return
            time.sleep(0.5)
        raise TimeoutError(f"workers not all active after {timeout_s:.0f} s: "
                           f"{self.dispatcher_states()}")


def plan(config: Path | None = None, *, workers: int | None = None,
         directory: Path | None = None, base: dict[str, Any] | None = None,
         host: str | None = None) -> ClusterPlan:
    """The cluster described by the settings file ``config`` (or the mapping ``base``), with
    ``workers`` and ``directory`` overriding ``cluster.workers`` and ``cluster.directory``.
    Worker ids are ``<host>-worker-<i>`` (``host``: this host's name)."""
    if base is None:
        base = (yaml.safe_load(config.read_text()) or {}) if config else {}
    base = copy.deepcopy(base)
    cluster = base.setdefault("cluster", {})
    if workers is not None:
        cluster["workers"] = workers
    if directory is not None:
        cluster["directory"] = str(directory)
    settings = IvrSettings(**copy.deepcopy(base))
    c = settings.cluster
    where = Path(c.directory).resolve()
    host = host or socket.gethostname()
    pool = tuple(Worker(index=i, sip_port=c.first_sip_port + i - 1,
                        http_port=c.first_http_port + i - 1,
                        rtp_port=settings.sip.rtp_port + (i - 1) * c.rtp_ports_per_worker,
                        worker_id=f"{host}-worker-{i}", config_path=where / f"worker-{i}.yaml",
                        _host=c.worker_host)
                 for i in range(1, c.workers + 1))
    return ClusterPlan(settings=settings, base=base, directory=where, workers=pool)


def _per_worker_sqlite(url: str, index: int) -> str:
    """A SQLite URL made one file per worker (two processes writing one SQLite file would
    serialise on its lock); any other database is shared as it is."""
    if not url.startswith("sqlite:///"):
        return url
    path = url[len("sqlite:///"):]
    stem, dot, suffix = path.rpartition(".")
    return f"sqlite:///{stem}-worker-{index}.{suffix}" if dot else f"{url}-worker-{index}"


def worker_settings(p: ClusterPlan, worker: Worker) -> dict[str, Any]:
    """Worker ``worker``'s settings file: the base with its own ports and identity."""
    c, s = p.settings.cluster, p.settings
    config = copy.deepcopy(p.base)
    sip = config.setdefault("sip", {})
    sip.update({"host": c.worker_host, "port": worker.sip_port, "rtp_port": worker.rtp_port,
                "rtp_port_range": c.rtp_ports_per_worker,
                # Calls come from the edge alone; it enforces the trunks' allow-list.
                "allow_from": [f"{c.edge_host}/32"]})
    # Agent legs are dialled directly, not through the edge (sip.outbound_proxy unset): see
    # deploy/kamailio/README.md for why.
    # The address in the worker's SDP, where the trunk sends RTP (PJSIP would otherwise write
    # the host's default interface address, whatever sip.host is).
    sip.setdefault("public_address", c.worker_host)
    server = config.setdefault("server", {})
    server.update({"http_port": worker.http_port, "worker_id": worker.worker_id,
                   "store_url": _per_worker_sqlite(s.server.store_url, worker.index),
                   "spool_dir": str(Path(s.server.spool_dir) / f"worker-{worker.index}")})
    IvrSettings(**copy.deepcopy(config))  # refuse to write what a worker would refuse to load
    return config


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(DEPLOY)),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              autoescape=False)


def find_modules() -> str:
    """Kamailio's module directory on this host."""
    for pattern in MODULE_DIRS:
        for found in sorted(glob.glob(pattern)):
            if Path(found, "dispatcher.so").exists():
                return found
    return MODULE_DIRS[0]


def render_kamailio(p: ClusterPlan, *, debug: int = 2, module_path: str | None = None) -> str:
    c = p.settings.cluster
    return _environment().get_template("kamailio/kamailio.cfg.j2").render(
        debug=debug, children=2, edge_host=c.edge_host, edge_port=c.edge_port,
        module_path=module_path or find_modules(), control_socket=str(p.control_socket),
        probe_interval_s=c.probe_interval_s, probe_timeout_ms=c.probe_timeout_ms,
        pike_window_s=c.pike_window_s, pike_requests=c.pike_requests,
        dispatcher_list=str(p.dispatcher_list), dispatcher_set=DISPATCHER_SET,
        trunk_networks=c.trunk_allow_from, retry_after_s=p.settings.sip.retry_after_s)


def render_dispatcher(p: ClusterPlan) -> str:
    lines = ["# setid destination flags priority attributes (generated by `ivr cluster`)"]
    lines += [f"{DISPATCHER_SET} {w.sip_uri} 0 0 duid={w.worker_id}" for w in p.workers]
    return "\n".join(lines) + "\n"


def render_supervisord(p: ClusterPlan) -> str:
    kamailio = shutil.which("kamailio") or "/usr/sbin/kamailio"
    return _environment().get_template("supervisor/supervisord.conf.j2").render(
        directory=str(p.directory), kamailio=kamailio, kamailio_cfg=str(p.kamailio_cfg),
        python=sys.executable, root=str(ROOT), workers=len(p.workers),
        stop_wait_s=int(p.settings.sip.shutdown_grace_s) + 10)


def write(p: ClusterPlan) -> list[Path]:
    """Write every configuration file of ``p``; returns their paths."""
    (p.directory / "logs").mkdir(parents=True, exist_ok=True)
    written = [p.kamailio_cfg, p.dispatcher_list, p.supervisord_conf]
    p.kamailio_cfg.write_text(render_kamailio(p))
    p.dispatcher_list.write_text(render_dispatcher(p))
    p.supervisord_conf.write_text(render_supervisord(p))
    for worker in p.workers:
        worker.config_path.write_text(yaml.safe_dump(worker_settings(p, worker),
                                                     sort_keys=False))
        written.append(worker.config_path)
    return written


def check_kamailio(cfg: Path) -> subprocess.CompletedProcess:
    """``kamailio -c``: parse the configuration and load its modules without starting."""
    kamailio = shutil.which("kamailio") or "/usr/sbin/kamailio"
    return subprocess.run([kamailio, "-c", "-f", str(cfg)], capture_output=True, text=True,
                          timeout=60)


def supervisord_command(p: ClusterPlan) -> list[str]:
    supervisord = shutil.which("supervisord") or "/usr/bin/supervisord"
    return [supervisord, "-n", "-c", str(p.supervisord_conf)]


def run(p: ClusterPlan) -> int:
    """Write the configs, check Kamailio's, then become supervisord (it runs until stopped)."""
    write(p)
    checked = check_kamailio(p.kamailio_cfg)
    if checked.returncode != 0:
        print(f"ivr cluster: kamailio -c refused {p.kamailio_cfg}:\n{checked.stderr[-3000:]}",
              file=sys.stderr)
        return 2
    command = supervisord_command(p)
    print(f"ivr cluster: edge {p.edge_uri}, {len(p.workers)} workers; "
          f"supervisorctl -c {p.supervisord_conf} status", flush=True)
    os.execv(command[0], command)
    return 0  # not reached
