"""Seeded SIP fuzz campaign and INVITE flood against one real `ivr serve` worker (issue 16).

    python -m bench.sip_fuzz [--count 10000] [--seed 4475] [--rate 100]
                             [--flood-rate 200] [--flood-seconds 20] [--no-fuzz] [--no-flood]

Fuzz: ``--count`` mutated INVITEs and re-INVITEs (bench/sipkit.py's Mutator; half from an
allowed source, half from a refused one, one in ten a re-INVITE inside a held call) at ``--rate``
per second, in chunks of 500 whose seeds derive from ``--seed``, so any chunk can be replayed.
After each chunk the worker must be alive and answer an OPTIONS; if not, the chunk counts as a
crash (the log's assertion goes into the report; the chunk's seed replays it, and the messages
it sent are kept in the work folder, whose path is printed) and a new worker is started for the
next one.

Flood: the worker holds one live call (max_calls 1) from 127.0.0.1 that sends RTP and records
the kernel arrival time of every RTP packet the IVR sends back; sipp then sends
``--flood-rate`` INVITEs/s for ``--flood-seconds`` twice: from a refused source (127.0.0.2, 403)
and from an allowed one while the worker is full (127.0.0.3, 503). Measured: the largest gap in
the live call's audio during each flood, sipp's answers, the worker's survival, the Prometheus
refusal counter and the call rows the refusals left in the store.

Writes bench/results/sip_fuzz.md, sip_fuzz.json and sip_fuzz.png. Nothing leaves the machine:
the worker binds SIP to 127.0.0.1 and every fuzzed message passes sipkit's guard.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench import sipkit
from bench.harness import API_TOKEN, IvrProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CHUNK = 500
LIVE_CALLER = b"+15550030001"


def machine() -> str:
    return f"{os.cpu_count()}-core {platform.machine()} VM"


class Worker(IvrProcess):
    """One `ivr serve` process (echo handler) on loopback, with its own store and log."""

    def __init__(self, workdir: Path, sip: dict) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir, {"call": {"handler": "echo", "greeting": "Hello."},
                                   "sip": dict(sip)})

    @property
    def sip_address(self) -> tuple[str, int]:
        return "127.0.0.1", self.sip_port

    def start(self, timeout_s: float = 240.0) -> Worker:
        super().start(timeout_s)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def assertions(self) -> list[str]:
        return [ln.strip() for ln in self.log().splitlines() if "Assertion" in ln]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def responsive(self) -> bool:
        return self.alive() and _options_answered(self.sip_address)

    def http(self, path: str, token: bool = False) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {API_TOKEN}"} if token else {}
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}",
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=15) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError as error:
            return 0, str(error).encode()

    def calls_active(self) -> int:
        status, body = self.http("/healthz")
        try:
            return int(json.loads(body).get("calls_active", 0))
        except (ValueError, AttributeError):
            return 0

    def metrics(self) -> str:
        return self.http("/metrics")[1].decode(errors="replace")


def _options_answered(address: tuple[str, int], wait_s: float = 3.0) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        call_id = os.urandom(8).hex().encode()
        sock.sendto(b"OPTIONS sip:ivr@127.0.0.1:%d SIP/2.0\r\n"
                    b"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%s;rport\r\n"
                    b"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=probe\r\n"
                    b"To: <sip:ivr@127.0.0.1>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\n"
                    b"Content-Length: 0\r\n\r\n" % (address[1], sock.getsockname()[1],
                                                    call_id, call_id), address)
        sock.settimeout(wait_s)
        try:
            while True:
                if call_id in sock.recv(65535):
                    return True
        except TimeoutError:
            return False


# --------------------------------------------------------------------------------------------
# Fuzz campaign


def fuzz_campaign(args: argparse.Namespace, workdir: Path) -> dict:
    sip = {"max_calls": 2, "max_silence_s": 60,
           "allow_from": ["127.0.0.1/32", "127.0.0.4/32"]}
    worker = Worker(workdir / "fuzz-0", sip).start()
    crashes, totals = [], sipkit.FuzzStats()
    chunks = (args.count + CHUNK - 1) // CHUNK
    started = time.time()
    try:
        for k in range(chunks):
            count = min(CHUNK, args.count - k * CHUNK)
            seed = args.seed * 1000 + k
            stats = sipkit.fuzz(worker.sip_address, count=count, seed=seed, rate=args.rate,
                                allowed_host="127.0.0.4", refused_host="127.0.0.5",
                                alive=worker.alive)
            _merge(totals, stats)
            ok = worker.alive() and worker.responsive()
            print(f"fuzz chunk {k + 1}/{chunks} (seed {seed}): {stats.sent} sent, "
                  f"answers {dict(stats.codes)}, {'ok' if ok else 'WORKER LOST'}", flush=True)
            if not ok:
                saved = workdir / f"crash-chunk{k + 1}-seed{seed}.txt"
                saved.write_text("\n".join(f"{i} {who} {data.hex()}" for i, who, data in
                                           stats.log))
                crashes.append({"chunk": k + 1, "seed": seed, "sent": stats.sent,
                                "exit": worker.proc.poll(),
                                "hung": worker.alive(), "assertions": worker.assertions()[-3:]})
                worker.stop()
                worker = Worker(workdir / f"fuzz-{k + 1}", sip).start()
        _wait(lambda: worker.calls_active() == 0, 30)
        good = good_call(worker)
    finally:
        rc = worker.stop()
    return {"count": args.count, "seed": args.seed, "rate": args.rate, "chunk": CHUNK,
            "seconds": round(time.time() - started, 1), "crashes": crashes,
            "stats": totals.as_dict(), "good_call_after": good, "final_exit_code": rc}


def _merge(total: sipkit.FuzzStats, part: sipkit.FuzzStats) -> None:
    total.sent += part.sent
    total.redrawn += part.redrawn
    total.ops.update(part.ops)
    total.codes.update(part.codes)
    total.answered_calls += part.answered_calls
    total.reinvites += part.reinvites
    total.reinvite_codes.update(part.reinvite_codes)
    total.calls_placed += part.calls_placed


def good_call(worker: Worker) -> dict:
    """A raw call from 127.0.0.1: answered, audio received for 2 s, hung up with 200."""
    call = sipkit.RawCall(worker.sip_address, "127.0.0.1", caller=b"+15550030009")
    try:
        code = call.invite(timeout_s=15)
        if code != 200:
            return {"invite": code, "ok": False}
        call.start_media()
        call.poll(2.0)
        packets = len(call.arrivals)
        bye = call.bye()
        return {"invite": code, "rtp_packets": packets, "bye": bye,
                "ok": code == 200 and bye == 200 and packets > 50}
    finally:
        call.close()


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return predicate()


# --------------------------------------------------------------------------------------------
# Flood


def flood_scenario() -> str:
    """One INVITE with a PCMU offer; any final answer is ACKed (same branch), none is waited
    for longer than sipp's -recv_timeout."""
    codes = [403, 480, 486, 488, 500, 503, 603]
    recv = "".join(f'  <recv response="{c}" optional="true" next="ack"/>\n' for c in codes)
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="flood">
  <send>
    <![CDATA[
      INVITE sip:+18005550100@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-flood-[call_number]-[pid]
      From: "Flood" <sip:+1555004[call_number]@[local_ip]:[local_port]>;tag=[pid]F[call_number]
      To: <sip:+18005550100@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:flood@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

v=0
o=flood 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
{recv}  <recv response="200" next="bye"/>
  <label id="ack"/>
  <send>
    <![CDATA[
      ACK sip:+18005550100@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-flood-[call_number]-[pid]
      From: "Flood" <sip:+1555004[call_number]@[local_ip]:[local_port]>;tag=[pid]F[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <nop next="end"/>
  <label id="bye"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Flood" <sip:+1555004[call_number]@[local_ip]:[local_port]>;tag=[pid]F[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <send>
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Flood" <sip:+1555004[call_number]@[local_ip]:[local_port]>;tag=[pid]F[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <label id="end"/>
</scenario>
"""


def run_sipp_flood(worker: Worker, workdir: Path, source: str, rate: int, seconds: int,
                   name: str) -> dict:
    sipp = shutil.which("sipp")
    if sipp is None:
        return {"error": "sipp missing (Debian sip-tester)"}
    scenario = workdir / f"{name}.xml"
    scenario.write_text(flood_scenario())
    calls = rate * seconds
    args = [sipp, "-sf", str(scenario), "-m", str(calls), "-r", str(rate), "-l", str(calls),
            "-i", source, "-mi", source, "-p", str(free_port()), "-mp", str(free_port()),
            "-nr", "-recv_timeout", "2000", "-timeout", f"{seconds + 20}s", "-nostdin",
            "-trace_counts", "-trace_stat", "-fd", "1", "-max_socket", "1024",
            f"{worker.sip_address[0]}:{worker.sip_address[1]}"]
    started = time.time()
    done = subprocess.run(args, cwd=workdir, capture_output=True, text=True,
                          timeout=seconds + 90)
    result = {"source": source, "rate": rate, "seconds": seconds, "invites": calls,
              "sipp_exit": done.returncode, "wall_s": round(time.time() - started, 1),
              "answers": _sipp_counts(workdir, name)}
    return result


def _sipp_counts(workdir: Path, name: str) -> dict:
    """Responses received per status code, from sipp's -trace_counts file."""
    files = sorted(workdir.glob(f"{name}_*_counts.csv"))
    if not files:
        return {}
    lines = [ln for ln in files[-1].read_text().splitlines() if ln.strip()]
    header, last = lines[0].split(";"), lines[-1].split(";")
    counts: dict[str, int] = {}
    for key, value in zip(header, last, strict=False):
        parts = key.split("_")
        if len(parts) >= 3 and parts[-1] == "Recv" and parts[1].isdigit() and value.isdigit():
            counts[parts[1]] = counts.get(parts[1], 0) + int(value)
        if len(parts) >= 3 and parts[-1] in ("Timeout", "Unexp") and value.isdigit():
            counts[parts[-1].lower()] = counts.get(parts[-1].lower(), 0) + int(value)
    return counts


def flood(args: argparse.Namespace, workdir: Path) -> dict:
    sip = {"max_calls": 1, "max_silence_s": 600, "allow_from": ["127.0.0.1/32", "127.0.0.3/32"]}
    worker = Worker(workdir / "flood", sip).start()
    live = sipkit.RawCall(worker.sip_address, "127.0.0.1", caller=LIVE_CALLER)
    result: dict = {"floods": []}
    try:
        code = live.invite(timeout_s=15)
        result["live_call_invite"] = code
        if code != 200:
            return result
        live.start_media()
        time.sleep(5.0)  # the greeting and a baseline
        t0 = time.time()
        result["baseline_max_gap_ms"] = _round(live.max_gap_ms(t0 - 4.0, t0))
        refused_before = sipkit.metric_total(worker.metrics(), "ivr_sip_refused_total")
        for source, label in (("127.0.0.2", "from a refused source (403)"),
                              ("127.0.0.3", "allowed source while full (503)")):
            if not worker.alive():
                break
            before = sipkit.metric_total(worker.metrics(), "ivr_sip_refused_total")
            start = time.time()
            outcome = run_sipp_flood(worker, workdir, source, args.flood_rate,
                                     args.flood_seconds, f"flood-{source.split('.')[-1]}")
            end = time.time()
            live.poll(0.0)
            alive = worker.alive()
            outcome.update({
                "label": label, "window": [start - t0, end - t0],
                "max_gap_ms": _round(live.max_gap_ms(start, end)),
                "rtp_packets": sum(1 for t in live.arrivals if start <= t <= end),
                "alive_after": alive, "responsive_after": alive and worker.responsive(),
                "refused_counted": (sipkit.metric_total(worker.metrics(),
                                                        "ivr_sip_refused_total") - before)
                if alive else None,
                "assertions": [] if alive else worker.assertions()[-3:]})
            result["floods"].append(outcome)
            print(f"flood {label}: {outcome}", flush=True)
            time.sleep(3.0)
        result["arrivals"] = [round(t - t0, 4) for t in live.arrivals]
        if worker.alive():
            result["live_call_bye"] = live.bye()
            result["refusal_metrics"] = [ln for ln in worker.metrics().splitlines()
                                         if ln.startswith("ivr_sip_refused_total")]
            result["refused_total_delta"] = (sipkit.metric_total(
                worker.metrics(), "ivr_sip_refused_total") - refused_before)
            status, body = worker.http("/api/calls?limit=500", token=True)
            rows = json.loads(body) if status == 200 else []
            result["api_calls_status"] = status
            result["store_rows_latest_500"] = len(rows)
            result["store_refused_rows_latest_500"] = sum(
                1 for r in rows if str(r.get("end_reason", "")).startswith("refused"))
    finally:
        live.close()
        result["exit_code"] = worker.stop()
    return result


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# --------------------------------------------------------------------------------------------
# Report


def write_report(out: Path, fuzz_result: dict | None, flood_result: dict | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = {"machine": machine(), "date": time.strftime("%Y-%m-%d"),
            "fuzz": fuzz_result, "flood": {k: v for k, v in (flood_result or {}).items()
                                           if k != "arrivals"} if flood_result else None}
    (out / "sip_fuzz.json").write_text(json.dumps(data, indent=1) + "\n")
    command = " ".join(["python -m bench.sip_fuzz", *sys.argv[1:]])
    lines = ["# SIP fuzz campaign and INVITE flood (issue 16)", "",
             f"One `ivr serve` worker (echo handler), loopback, {machine()}, "
             f"{data['date']}. Produced by `{command}` "
             "(bench/sipkit.py sends; every message passes its loopback guard).", ""]
    if fuzz_result:
        f, s = fuzz_result, fuzz_result["stats"]
        lines += ["## Fuzz", "",
                  f"{s['sent']:,} of {f['count']:,} mutated INVITEs and re-INVITEs (a chunk "
                  "stops where its worker is lost; "
                  f"seed {f['seed']}, chunks of "
                  f"{f['chunk']} with seeds {f['seed']}000 + chunk, {f['rate']:g}/s; half of the "
                  "new INVITEs from an allowed source, half from a refused one; "
                  f"{s['reinvites']:,} re-INVITEs inside {s['calls_placed']} held calls) in "
                  f"{f['seconds']:.0f} s.", "",
                  "| measure | result | goal |", "|---|---|---|",
                  f"| worker lost (abort or SIP stack hung) | **{len(f['crashes'])}** | 0 |",
                  f"| answers to new INVITEs | {_codes(s['codes'])} | |",
                  f"| answers to re-INVITEs (0: none) | {_codes(s['reinvite_codes'])} | |",
                  f"| calls answered (then hung up by the fuzzer) | {s['answered_calls']} | |",
                  f"| mutations redrawn (would have named a host off this machine) | "
                  f"{s['redrawn']} | |",
                  f"| good call afterwards | {_good(f['good_call_after'])} | answered, audio, "
                  "BYE 200 |", ""]
        for c in f["crashes"]:
            kind = "hung (alive, SIP stack answering nothing)" if c["hung"] else \
                f"exited {c['exit']}"
            lines.append(f"- chunk {c['chunk']} (seed {c['seed']}): {kind}; "
                         + ("; ".join(f"`` {a} ``" for a in c["assertions"]) or "no assertion "
                            "in the log"))
        if f["crashes"]:
            lines += ["", "A worker lost in a chunk is replayed from its seed; the messages it "
                      "sent are kept in the work folder the run prints. Inputs isolated from "
                      "them go to tests/fixtures/sip/fuzz/ and run in tests/test_sip_hostile.py.",
                      ""]
        lines += ["Mutations used: " + ", ".join(f"{k} {v}" for k, v in
                                                 sorted(s["ops"].items())) + ".", ""]
    if flood_result:
        r = flood_result
        lines += ["## Flood", "",
                  "The worker (sip.max_calls 1) holds one live call from 127.0.0.1 that sends "
                  "PCMU silence and takes the kernel arrival time of every RTP packet the IVR "
                  "sends back (20 ms apart when all is well). sipp (`-r "
                  f"{r['floods'][0]['rate'] if r.get('floods') else '?'}`, `-nr`: no "
                  "retransmissions, as a flood sends) then sends INVITEs with SDP from a refused "
                  "source and from an allowed one while the worker is full.", "",
                  f"Live call: INVITE {r.get('live_call_invite')}, largest audio gap before the "
                  f"floods {r.get('baseline_max_gap_ms')} ms.", "",
                  "| flood | INVITEs | answers | worker after | largest audio gap | refusals "
                  "counted (Prometheus) |", "|---|---|---|---|---|---|"]
        for fl in r.get("floods", []):
            state = "alive, answering" if fl.get("responsive_after") else (
                "alive, SIP hung" if fl.get("alive_after") else "**died**")
            lines.append(f"| {fl['label']}, {fl['rate']}/s for {fl['seconds']} s | "
                         f"{fl['invites']:,} | {_codes(fl.get('answers', {}))} | {state} | "
                         f"{fl.get('max_gap_ms')} ms | {_int(fl.get('refused_counted'))} |")
            for a in fl.get("assertions", []):
                lines.append(f"|  | `` {a} `` | | | | |")
        goal_ok = all(fl.get("responsive_after") and (fl.get("max_gap_ms") or 1e9) <= 100
                      for fl in r.get("floods", [])) and len(r.get("floods", [])) == 2
        lines += ["", f"Goal (survives >= 200 INVITEs/s for 20 s, no audio gap over 100 ms): "
                      f"**{'met' if goal_ok else 'not met'}**.", ""]
        if "refusal_metrics" in r:
            lines += ["After both floods: live call BYE "
                      f"{r.get('live_call_bye')}; `ivr_sip_refused_total` grew by "
                      f"{r.get('refused_total_delta'):.0f}:", "", "```",
                      *r["refusal_metrics"], "```", "",
                      f"`/api/calls?limit=500`: HTTP {r.get('api_calls_status')}, "
                      f"{r.get('store_refused_rows_latest_500')} of the latest "
                      f"{r.get('store_rows_latest_500')} rows are refusals.", ""]
    lines += ["![RTP inter-arrival at the live call during the floods](sip_fuzz.png)", ""]
    (out / "sip_fuzz.md").write_text("\n".join(lines))
    if flood_result and flood_result.get("arrivals"):
        plot(out / "sip_fuzz.png", flood_result)


def _codes(codes: dict) -> str:
    codes = {k: v for k, v in codes.items() if v}
    if not codes:
        return "none"
    return ", ".join(f"{k}: {v:,}" for k, v in sorted(codes.items(), key=lambda kv: str(kv[0])))


def _int(value) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _good(result: dict) -> str:
    if result.get("ok"):
        return f"ok (INVITE 200, {result['rtp_packets']} RTP packets in 2 s, BYE 200)"
    return f"**failed** {result}"


def plot(path: Path, flood_result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = flood_result["arrivals"]
    gaps = [(b - a) * 1000 for a, b in zip(times, times[1:], strict=False)]
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.plot(times[1:], gaps, lw=0.6, color="tab:blue", label="RTP inter-arrival at the caller")
    for fl in flood_result.get("floods", []):
        start, end = fl["window"]
        ax.axvspan(start, end, alpha=0.15, color="tab:red")
        ax.text(start, max(gaps + [110]) * 0.9, f" {fl['rate']}/s\n {fl['label'].split(',')[0]}",
                fontsize=7, va="top")
    ax.axhline(100, color="tab:red", ls="--", lw=0.8, label="goal: no gap over 100 ms")
    ax.set_xlabel("seconds since the live call's baseline")
    ax.set_ylabel("ms between packets")
    ax.set_title(f"Live call audio during INVITE floods ({machine()})", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10000, help="fuzzed messages")
    parser.add_argument("--seed", type=int, default=4475)
    parser.add_argument("--rate", type=float, default=100.0, help="fuzzed messages per second")
    parser.add_argument("--flood-rate", type=int, default=200, help="INVITEs per second")
    parser.add_argument("--flood-seconds", type=int, default=20)
    parser.add_argument("--no-fuzz", action="store_true")
    parser.add_argument("--no-flood", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    for host in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"):
        if not sipkit.loopback_aliases_work(host):
            print(f"cannot send from {host}: this needs Linux's whole-127/8 loopback")
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="sip-fuzz-"))
    fuzz_result = None if args.no_fuzz else fuzz_campaign(args, workdir)
    flood_result = None if args.no_flood else flood(args, workdir)
    write_report(args.out, fuzz_result, flood_result)
    lost = (fuzz_result and fuzz_result["crashes"]) or (flood_result and not all(
        f.get("responsive_after") for f in flood_result.get("floods", [])))
    if lost:
        print(f"worker logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print((args.out / "sip_fuzz.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
