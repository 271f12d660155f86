"""The generated Kamailio edge: `kamailio -c` accepts it, the committed example is what
`ivr cluster` generates, and a real Kamailio (no workers needed) answers a trunk's keep-alive,
refuses sources outside the trunk networks, stops a flood, and answers 503 with Retry-After
when no worker takes the call."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from bench.harness import free_port
from bench.sipkit import header
from voice.app import cluster

KAMAILIO = Path("/usr/sbin/kamailio")
pytestmark = pytest.mark.skipif(not KAMAILIO.exists(),
                                reason="kamailio missing (`make test` installs it)")
EXAMPLE = cluster.DEPLOY / "kamailio"


def test_the_generated_config_passes_kamailio_check(tmp_path):
    p = cluster.plan(base={"cluster": {"workers": 3, "trunk_allow_from": [
        "127.0.0.1/32", "10.20.0.0/16", "2001:db8::/32"]}}, directory=tmp_path)
    written = cluster.write(p)
    assert {f.name for f in written} >= {"kamailio.cfg", "dispatcher.list", "supervisord.conf",
                                         "worker-1.yaml", "worker-3.yaml"}
    checked = cluster.check_kamailio(p.kamailio_cfg)
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert "src_ip == 10.20.0.0/16" in p.kamailio_cfg.read_text()
    # Each worker: its own ports and identity, calls from the edge only, agents dialled
    # directly.
    ports = set()
    for worker in p.workers:
        config = yaml.safe_load(worker.config_path.read_text())
        assert config["sip"]["allow_from"] == ["127.0.0.1/32"]
        assert "outbound_proxy" not in config["sip"]
        assert config["server"]["worker_id"] == worker.worker_id
        assert config["server"]["store_url"].endswith(f"-worker-{worker.index}.sqlite")
        ports |= {config["sip"]["port"], config["server"]["http_port"]}
    assert len(ports) == 6


def test_a_broken_config_is_refused_by_kamailio_check(tmp_path):
    p = cluster.plan(base={}, directory=tmp_path)
    cluster.write(p)
    p.kamailio_cfg.write_text(p.kamailio_cfg.read_text().replace("route(RELAY);",
                                                                 "route(RELAY)", 1))
    assert cluster.check_kamailio(p.kamailio_cfg).returncode != 0


def test_the_committed_example_is_what_ivr_cluster_generates():
    p = example_plan()
    assert (EXAMPLE / "kamailio.cfg").read_text() == \
        cluster.render_kamailio(p, module_path=cluster.DEBIAN_MODULES)
    assert (EXAMPLE / "dispatcher.list").read_text() == cluster.render_dispatcher(p)


def example_plan() -> cluster.ClusterPlan:
    return cluster.plan(base={"cluster": {"workers": 3, "trunk_allow_from": ["127.0.0.1/32",
                                                                             "10.0.0.0/8"]}},
                        directory=Path("/var/lib/ivr/cluster"), host="ivr1")


def write_example() -> None:
    """Regenerate the committed example (``python -m tests.test_kamailio``)."""
    p = example_plan()
    (EXAMPLE / "kamailio.cfg").write_text(
        cluster.render_kamailio(p, module_path=cluster.DEBIAN_MODULES))
    (EXAMPLE / "dispatcher.list").write_text(cluster.render_dispatcher(p))


def sip_request(method: str, edge: int, sock: socket.socket, body: bytes = b"") -> bytes:
    host, port = sock.getsockname()
    return (f"{method} sip:+18005550100@127.0.0.1:{edge} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:+15550000001@{host}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:+18005550100@127.0.0.1:{edge}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}\r\n"
            f"CSeq: 1 {method}\r\n"
            f"Contact: <sip:caller@{host}:{port}>\r\n"
            + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def final_answer(sock: socket.socket, timeout_s: float) -> bytes | None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        sock.settimeout(max(0.05, deadline - time.time()))
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            return None
        code = int(data.split(b" ", 2)[1]) if data.startswith(b"SIP/2.0 ") else 0
        if code >= 200:
            return data
    return None


@pytest.fixture
def edge(tmp_path):
    """Kamailio with the generated config in front of two workers that are not running."""
    p = cluster.plan(base={"sip": {"retry_after_s": 7}, "cluster": {
        "workers": 2, "edge_port": free_port(), "first_sip_port": free_port(),
        "probe_interval_s": 1, "probe_timeout_ms": 500, "pike_requests": 20,
        "pike_window_s": 2}}, directory=tmp_path)
    cluster.write(p)
    proc = subprocess.Popen([str(KAMAILIO), "-DD", "-E", "-f", str(p.kamailio_cfg)],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "edge.log", "w"))
    try:
        deadline = time.time() + 20
        while not p.control_socket.exists() and time.time() < deadline:
            time.sleep(0.1)
        yield p
    finally:
        proc.terminate()
        proc.wait(20)


def test_the_edge_answers_refuses_and_limits(edge):
    port = edge.settings.cluster.edge_port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as trunk:
        trunk.bind(("127.0.0.1", 0))
        # A trunk's keep-alive is answered by the edge itself.
        trunk.sendto(sip_request("OPTIONS", port, trunk), ("127.0.0.1", port))
        answer = final_answer(trunk, 5)
        assert answer is not None and answer.startswith(b"SIP/2.0 200"), answer
        # No worker answers (none runs): the INVITE fails over, then 503 with Retry-After.
        sdp = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               b"m=audio 40000 RTP/AVP 0\r\n")
        trunk.sendto(sip_request("INVITE", port, trunk, sdp), ("127.0.0.1", port))
        answer = final_answer(trunk, 15)
        assert answer is not None and answer.startswith(b"SIP/2.0 503"), answer
        assert header(answer, "Retry-After") == b"7"
    # Both workers are now marked down by the probes.
    deadline = time.time() + 10
    while time.time() < deadline and not all(
            f.startswith("I") for f in edge.dispatcher_states().values()):
        time.sleep(0.2)
    assert all(f.startswith("I") for f in edge.dispatcher_states().values()), \
        edge.dispatcher_states()

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        try:
            stranger.bind(("127.0.0.2", 0))
        except OSError:
            pytest.skip("no 127.0.0.2 on this host's loopback")
        stranger.sendto(sip_request("INVITE", port, stranger), ("127.0.0.1", port))
        answer = final_answer(stranger, 5)
        assert answer is not None and answer.startswith(b"SIP/2.0 403"), answer

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
        flood.bind(("127.0.0.3", 0))
        for _ in range(200):
            flood.sendto(sip_request("OPTIONS", port, flood), ("127.0.0.1", port))
        answers = 0
        while final_answer(flood, 1.0) is not None:
            answers += 1
        # pike lets about pike_requests per window through, then drops the source's requests.
        assert 1 <= answers < 100, answers

    # A malformed request is refused (400) by the sanity checks, and the edge keeps serving.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as trunk:
        trunk.bind(("127.0.0.1", 0))
        bad = sip_request("OPTIONS", port, trunk).replace(b"CSeq: 1 OPTIONS", b"CSeq: x OPTIONS")
        trunk.sendto(bad, ("127.0.0.1", port))
        answer = final_answer(trunk, 1.5)
        assert answer is None or answer.startswith(b"SIP/2.0 400"), answer
        trunk.sendto(sip_request("OPTIONS", port, trunk), ("127.0.0.1", port))
        answer = final_answer(trunk, 5)
        assert answer is not None and answer.startswith(b"SIP/2.0 200"), answer


if __name__ == "__main__":
    write_example()
