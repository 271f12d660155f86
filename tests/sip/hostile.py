"""The crash corpus (tests/fixtures/sip/corpus.json) sent to a real `ivr serve`.

Every message is rewritten to the sender's loopback socket before it is sent (bench/sipkit.py
explains the rules and the guard that refuses to send anything that could leave the machine).
Sources: 127.0.0.3 is an allowed trunk, 127.0.0.2 a refused one; the good calls of the tests come
from 127.0.0.1, so whatever the server does to a misbehaving source does not touch them.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.sipkit import Agent, Outcome, RawCall, UnsafeMessage

CORPUS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "sip"
ALLOWED = "127.0.0.3"
REFUSED = "127.0.0.2"
PHASES = [("refused", "idle", "udp"), ("allowed", "idle", "udp"), ("allowed", "full", "udp"),
          ("allowed", "idle", "tcp")]


@dataclass(frozen=True)
class Entry:
    name: str
    file: str
    expect: object  # list of codes, "reject", "final", "none" or "any"
    note: str
    source: str = "allowed"
    when: str = "idle"
    transport: str = "udp"
    issue: str | None = None

    @property
    def data(self) -> bytes:
        return (CORPUS_DIR / self.file).read_bytes()

    @property
    def phase(self) -> tuple[str, str, str]:
        return self.source, self.when, self.transport


def load_corpus() -> list[Entry]:
    return [Entry(**e) for e in json.loads((CORPUS_DIR / "corpus.json").read_text())]


def expectation_met(expect, outcome: Outcome) -> bool:
    if outcome.skipped:
        return False
    if isinstance(expect, list):
        return outcome.final in expect
    if expect == "reject":
        return not any(200 <= c < 300 for c in outcome.codes)
    if expect == "final":
        return outcome.final is not None
    if expect == "none":
        return outcome.codes == []
    return True  # "any"


@dataclass
class Sent:
    entry: Entry
    outcome: Outcome
    alive_after: bool
    crash_log: str = ""  # the server log's tail when this message killed (or hung) it
    responsive_after: bool = True  # a well-formed OPTIONS from 127.0.0.1 was still answered
    epoch: int = 0  # how many times the server had been restarted when this was sent


@dataclass
class CorpusRun:
    sent: dict[str, Sent] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # could not be made safe to send
    restarts: int = 0

    @property
    def crashes(self) -> list[Sent]:
        return [s for s in self.sent.values() if not s.alive_after]

    @property
    def hangs(self) -> list[Sent]:
        return [s for s in self.sent.values() if s.alive_after and not s.responsive_after]


class Target:
    """What the runner needs from the server under test; the test gives it a live one."""

    address: tuple[str, int]

    def alive(self) -> bool: ...

    def calls_active(self) -> int: ...

    def log_tail(self) -> str: ...

    def restart(self) -> None: ...  # also when alive but deaf: the old process is killed


def responsive(address: tuple[str, int], wait_s: float = 2.0) -> bool:
    """Whether the SIP stack still answers a well-formed OPTIONS from 127.0.0.1 (UDP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        call_id = uuid.uuid4().hex.encode()
        sock.sendto(b"OPTIONS sip:ivr@127.0.0.1:%d SIP/2.0\r\n"
                    b"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%s;rport\r\n"
                    b"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=probe\r\n"
                    b"To: <sip:ivr@127.0.0.1>\r\nCall-ID: probe-%s\r\nCSeq: 1 OPTIONS\r\n"
                    b"Content-Length: 0\r\n\r\n" % (address[1], port, call_id[:12], call_id),
                    address)
        deadline = time.time() + wait_s
        while time.time() < deadline:
            sock.settimeout(max(0.01, deadline - time.time()))
            try:
                data = sock.recv(65535)
            except TimeoutError:
                return False
            if call_id in data and data.startswith(b"SIP/2.0 "):
                return True
    return False


def wait_until(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.2) -> bool:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


def run_corpus(entries: list[Entry], target: Target, *, max_calls: int,
               wait_s: float = 1.0, restart_on_crash: bool = True) -> CorpusRun:
    """Send every entry, phase by phase (refused source first, then allowed; the "full" ones
    while ``max_calls`` calls are held; TCP last). After a message that got a call answered the
    runner waits for the server to be idle again, so the next answer is not a 503 by accident.
    When a message kills the server its log is kept and, with ``restart_on_crash``, a new one
    is started so the rest of the corpus is still tried."""
    run = CorpusRun()
    for phase in PHASES:
        todo = [e for e in entries if e.phase == phase]
        if not todo:
            continue
        source, when, transport = phase
        holders: list[RawCall] = []
        agent = Agent(target.address, REFUSED if source == "refused" else ALLOWED)
        try:
            if when == "full":
                holders = _fill(target, max_calls)
            for entry in todo:
                if not target.alive() or not responsive(target.address):
                    if not restart_on_crash:
                        break
                    agent.close()
                    target.restart()
                    run.restarts += 1
                    agent = Agent(target.address, agent.host)
                    if when == "full":
                        for holder in holders:
                            holder.close()
                        holders = _fill(target, max_calls)
                try:
                    data = agent.prepare(entry.data, transport.upper())
                except UnsafeMessage as why:
                    run.skipped.append(f"{entry.name}: {why}")
                    run.sent[entry.name] = Sent(entry, Outcome(sent=False, skipped=str(why)),
                                                target.alive())
                    continue
                answered = agent.answered_calls
                if transport == "tcp":
                    try:
                        outcome = agent.tcp_exchange(data, wait_s=wait_s + 0.5)
                    except OSError as why:
                        outcome = Outcome(codes=[], sent=False, skipped=f"tcp: {why}")
                else:
                    outcome = agent.exchange(data, wait_s=wait_s)
                time.sleep(0.05)
                alive = target.alive()
                awake = alive and responsive(target.address)
                run.sent[entry.name] = Sent(entry, outcome, alive,
                                            "" if awake else target.log_tail(), awake,
                                            run.restarts)
                if alive and agent.answered_calls > answered and when == "idle":
                    wait_until(lambda: target.calls_active() == 0, 15.0)
        finally:
            for holder in holders:
                try:
                    if target.alive() and holder.to is not None:
                        holder.bye(timeout_s=3.0)
                finally:
                    holder.close()
            agent.close()
            if target.alive():
                wait_until(lambda: target.calls_active() == 0, 15.0)
    return run


def _fill(target: Target, max_calls: int) -> list[RawCall]:
    """Hold ``max_calls`` calls from 127.0.0.1 so the server is full."""
    holders = []
    for i in range(max_calls):
        call = RawCall(target.address, "127.0.0.1", caller=b"+1555009%04d" % i)
        code = call.invite(timeout_s=15.0)
        holders.append(call)
        if code >= 300 or code == 0:
            break
    wait_until(lambda: target.calls_active() >= max_calls, 10.0)
    return holders


def describe(run: CorpusRun) -> str:
    """One line per message: name, codes, expectation, met."""
    lines = []
    for name, sent in run.sent.items():
        mark = "ok " if expectation_met(sent.entry.expect, sent.outcome) else "BAD"
        dead = "" if sent.alive_after else "  << PROCESS DIED"
        if sent.alive_after and not sent.responsive_after:
            dead = "  << SIP STACK HUNG (alive, answers nothing)"
        lines.append(f"{mark} {name:32s} {sent.outcome.codes!s:18s} expect "
                     f"{sent.entry.expect}{dead}")
    return "\n".join(lines)
