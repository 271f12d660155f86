"""`ivr demo`: real SIP calls over loopback to a real `ivr serve`, turn by turn.

Starts `ivr serve` (turn manager, seeded demo CRM, agent desktop, one demo agent), then places
two calls with the pjsua2 caller: a caller who asks where their order is and reads the number
(answered from the CRM), and a caller with a double charge, who is warm-transferred to the demo
agent (a pjsua2 endpoint that answers, hears the briefing, and says hello). Prints each call's
turns as `ivr simulate` does, the handoff package, and the agent desktop URL. Everything runs as
separate processes talking SIP/RTP on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path.cwd()  # var/ and the processes' working directory
CALLS = Path(__file__).resolve().parent / "demo_calls"  # shipped with the package
TOKEN = "demo-agent-token"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _peer(args: list[str], background: bool = False):
    cmd = [sys.executable, "-m", "voice.transports.sip.caller", *args]
    if background:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180).stdout
    return json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])


def _get(url: str, token: str | None = None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def run_demo(out_dir: Path, http_port: int = 8080) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    var = ROOT / "var" / "demo"
    var.mkdir(parents=True, exist_ok=True)
    crm_url = f"sqlite:///{var / 'crm.sqlite'}"
    if not (var / "crm.sqlite").exists():
        from handoff.crm import CrmStore, seed

        seed(CrmStore(crm_url))
    sip_port, agent_port = _free_port(), _free_port()
    try:  # the usual HTTP port, or any free one if something else holds it
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", http_port))
    except OSError:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            http_port = probe.getsockname()[1]
    config = {"call": {"handler": "manager", "crm_url": crm_url},
              "server": {"store_url": f"sqlite:///{var / 'ivr.sqlite'}",
                         "spool_dir": str(var / "spool"), "http_port": http_port},
              "sip": {"port": sip_port, "host": "127.0.0.1", "rtp_port": 30000},
              "handoff": {"agent_uris": [f"sip:agent@127.0.0.1:{agent_port}"],
                          "db_url": f"sqlite:///{var / 'handoffs.sqlite'}",
                          "spool_dir": str(var / "handoff-spool"),
                          "desktop_tokens": [f"Dana:{TOKEN}"]}}
    (var / "ivr.yaml").write_text(yaml.safe_dump(config))
    log = open(var / "ivr.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "voice.app.cli", "--config",
                               str(var / "ivr.yaml"), "serve"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=log, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            line = server.stdout.readline()
            if "ivr serve: ready" in line:
                print(line.strip(), flush=True)
                break
            if server.poll() is not None:
                print(f"ivr demo: the server did not start; see {var / 'ivr.log'}",
                      file=sys.stderr)
                return 1
        print(f"agent desktop: {base}/desktop  (token: {TOKEN})", flush=True)

        print("\n--- call 1: a caller asks where their order is and reads the number "
              "(real SIP/RTP, PCMU) ---", flush=True)
        first = _peer([f"sip:+18005550100@127.0.0.1:{sip_port}", "--play",
                       str(CALLS / "order_status_8k.wav"), "--wait", "3.5", "--tail", "9",
                       "--record", str(out_dir / "demo_sip_order.wav")])
        _show_call(base, "+15550000001", first)

        print("\n--- call 2: a double charge; the caller is warm-transferred to the demo agent "
              "---", flush=True)
        agent = _peer(["--answer", "--listen-port", str(agent_port), "--play",
                       str(CALLS / "agent_hello_8k.wav"), "--wait", "16", "--hangup-after",
                       "26", "--record", str(out_dir / "demo_agent.wav"), "--timeout", "90"],
                      background=True)
        time.sleep(1.0)
        second = _peer([f"sip:+18005550100@127.0.0.1:{sip_port}", "--play",
                        str(CALLS / "human_request_8k.wav"), "--wait", "3.5", "--stay",
                        "--timeout", "80", "--record", str(out_dir / "demo_transfer.wav")])
        agent_out, _ = agent.communicate(timeout=60)
        agent_result = json.loads([ln for ln in agent_out.splitlines()
                                   if ln.startswith("{") and '"event"' not in ln][-1])
        _show_call(base, "+15550000001", second)
        handoffs = _get(f"{base}/api/handoffs?limit=1", TOKEN)
        if handoffs:
            package = handoffs[0]
            (out_dir / "demo_handoff.json").write_text(json.dumps(package, indent=2))
            print(f"handoff {package['handoff_id']}: outcome {package['transfer']['outcome']}; "
                  f"the agent's INVITE carried X-IVR-Handoff-Id "
                  f"{agent_result['headers'].get('X-IVR-Handoff-Id')}")
            print(f"summary read to the agent: {package['summary']}")
            print(f"handoff package: {out_dir / 'demo_handoff.json'}")
        print(f"\nrecordings (left: caller, right: what they heard): {out_dir}/demo_sip_order.wav,"
              f" {out_dir}/demo_transfer.wav; the agent's side: {out_dir}/demo_agent.wav")
        print(f"call records: {base}/api/calls ; handoffs: {base}/api/handoffs "
              f"(Authorization: Bearer {TOKEN})")
        return 0
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        log.close()


def _show_call(base: str, caller_number: str, peer: dict) -> None:
    time.sleep(1.0)
    calls = [c for c in _get(f"{base}/api/calls?limit=5", TOKEN)
             if c["caller_number"] == caller_number]
    if not calls:
        print("no call record found", file=sys.stderr)
        return
    call = calls[0]
    for turn in call["turns"]:
        print(json.dumps({k: turn[k] for k in ("turn", "caller_text", "reply_text", "total_ms",
                                              "budget")}), flush=True)
    waits = [t["voice_to_voice_ms"] for t in peer.get("turns", []) if t["voice_to_voice_ms"]]
    print(json.dumps({"event": "call-end", "sip_call_id": call["sip_call_id"],
                      "end_reason": call["end_reason"], "codec": call["codec"],
                      "caller_side_voice_to_voice_ms": waits}), flush=True)
