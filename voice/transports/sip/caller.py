"""A SIP peer for tests, benchmarks and the demo: a caller that plays a recording, or an agent
that answers. It runs in its own process (pjsua2 allows one endpoint per process) and measures
what it hears where a caller would: frames sent and received are stamped on the same 20 ms media
clock, so the gap between the end of its speech and the first audible sample of the reply is the
voice-to-voice latency at the caller side, jitter buffers, codecs and the network included.

Run ``python -m voice.transports.sip.caller --help``; it prints one JSON object when the call is
over.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pjsua2 as pj

from voice.audio import read_audio, resample, write_wav
from voice.transports.sip.messages import header
from voice.transports.sip.pjbuffer import vector_bytes

RATE = 8000
FRAME = RATE // 50  # 20 ms
AUDIBLE_DBFS = -40.0  # a reply frame louder than this is audible
SPEECH_DBFS = -55.0  # where the caller's own speech ends: the level calls.json uses, so the
# decaying tail of the last word counts as speech, as the caller hears it


def frame_dbfs(frame: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2))) if len(frame) else 0.0
    return 20 * np.log10(max(rms, 1e-9) / 32768.0)


def utterance_ends(audio: np.ndarray, min_gap_s: float = 0.6) -> list[float]:
    """Seconds at which speech in ``audio`` (8 kHz) stops for at least ``min_gap_s``."""
    levels = [frame_dbfs(audio[i:i + FRAME]) for i in range(0, len(audio) - FRAME + 1, FRAME)]
    voiced = [lv > SPEECH_DBFS for lv in levels]
    ends, last_voiced, gap = [], None, int(min_gap_s * 50)
    for i, v in enumerate(voiced):
        if v:
            last_voiced = i
        elif last_voiced is not None and i - last_voiced >= gap:
            ends.append((last_voiced + 1) / 50)
            last_voiced = None
    if last_voiced is not None:
        ends.append((last_voiced + 1) / 50)
    return ends


def audible_onsets(audio: np.ndarray, min_gap_s: float = 0.3) -> list[float]:
    """Seconds at which audible sound starts after at least ``min_gap_s`` of quiet."""
    onsets, quiet = [], int(min_gap_s * 50)
    quiet_run = quiet
    for i in range(0, len(audio) - FRAME + 1, FRAME):
        if frame_dbfs(audio[i:i + FRAME]) > AUDIBLE_DBFS:
            if quiet_run >= quiet:
                onsets.append(i / RATE)
            quiet_run = 0
        else:
            quiet_run += 1
    return onsets


class _Port(pj.AudioMediaPort):
    """Plays ``outgoing`` from tick ``start_tick`` on and records what arrives, per tick."""

    def __init__(self) -> None:
        super().__init__()
        self.tick = 0
        self.outgoing = np.zeros(0, dtype=np.int16)
        self.start_tick: int | None = None
        self.sent: list[bytes] = []
        self.received: list[bytes] = []
        self.silence = bytes(FRAME * 2)
        self.lock = threading.Lock()
        self.missing = 0  # ticks with no frame from the far end (lost or late)

    def create(self) -> None:
        fmt = pj.MediaFormatAudio()
        fmt.type = pj.PJMEDIA_TYPE_AUDIO
        fmt.clockRate, fmt.channelCount, fmt.bitsPerSample = RATE, 1, 16
        fmt.frameTimeUsec = 20000
        fmt.avgBps = fmt.maxBps = RATE * 16
        self.createPort("peer", fmt)

    def play(self, audio: np.ndarray) -> None:
        with self.lock:
            self.outgoing = audio.astype(np.int16)
            self.start_tick = self.tick

    closed = False

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        with self.lock:
            pcm = self.silence
            if self.start_tick is not None:
                offset = (self.tick - self.start_tick) * FRAME
                chunk = self.outgoing[offset:offset + FRAME]
                if len(chunk):
                    pcm = np.pad(chunk, (0, FRAME - len(chunk))).tobytes()
            self.sent.append(pcm)
            self.tick += 1
        frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
        frame.buf = pj.ByteVector(pcm)
        frame.size = len(pcm)

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO:
            pcm = vector_bytes(frame.buf)
            if len(pcm) == FRAME * 2:
                with self.lock:
                    # Aligned on the tick clock: pad any frame the bridge skipped.
                    while len(self.received) < len(self.sent) - 1:
                        self.received.append(self.silence)
                        self.missing += 1
                    self.received.append(pcm)


@dataclass
class PeerState:
    status: int = 0
    reason: str = ""
    confirmed_at: float | None = None
    media_at: float | None = None
    disconnected_at: float | None = None
    invite_sent_at: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    codec: str | None = None
    calls_seen: int = 0
    transferred: bool = False  # this peer's call was moved by REFER/Replaces


class _Call(pj.Call):
    def __init__(self, peer: Peer, account: pj.Account, call_id: int = pj.PJSUA_INVALID_ID):
        super().__init__(account, call_id)
        self.peer = peer

    def onCallState(self, prm) -> None:
        if self is not self.peer.call:
            return  # a call replaced by a transfer: the new one is followed
        info = self.getInfo()
        state = self.peer.state
        if info.lastStatusCode:
            state.status, state.reason = info.lastStatusCode, info.lastReason
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and state.confirmed_at is None:
            state.confirmed_at = time.time()
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            state.disconnected_at = time.time()

    def onCallMediaState(self, prm) -> None:
        info = self.getInfo()
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and \
                    media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                audio = self.getAudioMedia(media.index)
                port = self.peer.port
                audio.startTransmit(port)
                port.startTransmit(audio)
                self.peer.state.codec = self.getStreamInfo(media.index).codecName
                if self.peer.state.media_at is None:
                    self.peer.state.media_at = time.time()


    def onCallTransferRequest(self, prm) -> None:
        """The IVR asks us (the caller) to call the agent instead (REFER): accept."""
        new = _Call(self.peer, self.peer.account)
        prm.newCall = new
        self.peer.old_calls.append(self)
        self.peer.call = new
        self.peer.state.transferred = True

    def onCallReplaced(self, prm) -> None:
        """The agent's side: the IVR's call to us is replaced by the caller's own (Replaces)."""
        new = _Call(self.peer, self.peer.account, prm.newCallId)
        prm.newCall = new
        self.peer.old_calls.append(self)
        self.peer.call = new
        self.peer.state.transferred = True


class _Account(pj.Account):
    def __init__(self, peer: Peer) -> None:
        super().__init__()
        self.peer = peer

    def onIncomingCall(self, prm) -> None:
        self.peer.incoming(self, prm)


class Peer:
    """One pjsua2 endpoint acting as a caller or an auto-answering agent."""

    def __init__(self, port: int = 0, codec: str = "PCMU", log_level: int = 0,
                 jitter_ms: int | None = None) -> None:
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = False
        cfg.logConfig.level = cfg.logConfig.consoleLevel = log_level
        cfg.medConfig.clockRate = cfg.medConfig.sndClockRate = RATE
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0
        if jitter_ms is not None:  # a phone's fixed-ish jitter buffer instead of PJSIP's default
            media = cfg.medConfig
            media.jbInit = media.jbMinPre = jitter_ms
            media.jbMaxPre = 2 * jitter_ms
        self.ep.libInit(cfg)
        transport = pj.TransportConfig()
        transport.port = port
        tid = self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
        self.local = self.ep.transportGetInfo(tid).localName
        self.ep.audDevManager().setNullDev()
        for info in self.ep.codecEnum2():
            self.ep.codecSetPriority(info.codecId, 0)
        self.ep.codecSetPriority({"PCMU": "PCMU/8000/1", "PCMA": "PCMA/8000/1",
                                  "G722": "G722/16000/1"}[codec], 255)
        self.ep.libStart()
        self.port = _Port()
        self.port.create()
        self.state = PeerState()
        self.account: _Account | None = None
        self.call: _Call | None = None
        self.answer_code = 200
        self.ring_s = 0.0
        self._answer_at: float | None = None
        self._rejected: list[_Call] = []
        self.old_calls: list[_Call] = []
        self.we_hung_up = False

    def register_account(self, uri: str) -> None:
        cfg = pj.AccountConfig()
        cfg.idUri = uri
        self.account = _Account(self)
        self.account.create(cfg)

    def dial(self, uri: str, headers: dict[str, str]) -> None:
        self.call = _Call(self, self.account)
        op = pj.CallOpParam(True)
        for name, value in headers.items():
            h = pj.SipHeader()
            h.hName, h.hValue = name, value
            op.txOption.headers.append(h)
        self.state.invite_sent_at = time.time()
        self.call.makeCall(uri, op)

    def incoming(self, account: pj.Account, prm) -> None:
        self.state.calls_seen += 1
        call = _Call(self, account, prm.callId)
        message = prm.rdata.wholeMsg
        if self.call is not None:  # one call at a time: busy
            op = pj.CallOpParam()
            op.statusCode = 486
            call.answer(op)
            self._rejected.append(call)
            return
        self.call = call
        for name in ("X-IVR-Handoff-Id", "User-to-User", "From", "To", "Call-ID",
                     "Record-Route"):
            value = header(message, name)
            if value is not None:
                self.state.headers[name] = value
        op = pj.CallOpParam()
        op.statusCode = 180 if self.answer_code == 200 else self.answer_code
        call.answer(op)
        if self.answer_code == 200:
            self._answer_at = time.time() + self.ring_s

    def pump(self, ms: int = 10) -> None:
        self.ep.libHandleEvents(ms)
        if self._answer_at is not None and time.time() >= self._answer_at and self.call:
            self._answer_at = None
            op = pj.CallOpParam()
            op.statusCode = 200
            self.call.answer(op)

    def hangup(self) -> None:
        if self.call is not None and self.state.disconnected_at is None:
            self.we_hung_up = True
            try:
                self.call.hangup(pj.CallOpParam())
            except pj.Error:
                pass

    def send_dtmf(self, digits: str, method: str) -> None:
        if method == "info":
            prm = pj.CallSendDtmfParam()
            prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
            prm.digits = digits
            self.call.sendDtmf(prm)
        else:
            self.call.dialDtmf(digits)

    def audio(self) -> tuple[np.ndarray, np.ndarray]:
        with self.port.lock:
            n = min(len(self.port.sent), len(self.port.received))
            sent = np.frombuffer(b"".join(self.port.sent[:n]), dtype=np.int16)
            received = np.frombuffer(b"".join(self.port.received[:n]), dtype=np.int16)
        return sent, received

    def close(self) -> None:
        from voice.transports.sip.endpoint import destroy

        self.hangup()
        for _ in range(30):
            self.ep.libHandleEvents(10)
        self.port.closed = True
        destroy(self.port)
        for call in [self.call, *self._rejected, *self.old_calls]:
            destroy(call)
        if self.account is not None:
            self.account.shutdown()
            destroy(self.account)
        self.ep.libDestroy()


def _load(path: str) -> np.ndarray:
    chunk = read_audio(path)
    return resample(chunk.samples, chunk.sample_rate, RATE).astype(np.int16)


def latency_report(sent: np.ndarray, received: np.ndarray, play_from_s: float) -> list[dict]:
    """For each caller utterance: end of its speech -> first audible reply after it."""
    onsets = audible_onsets(received)
    turns = []
    for end in utterance_ends(sent):
        reply = next((t for t in onsets if t > end), None)
        turns.append({"speech_end_s": round(end - play_from_s, 3),
                      "reply_onset_s": None if reply is None else round(reply - play_from_s, 3),
                      "voice_to_voice_ms": None if reply is None else round((reply - end) * 1000,
                                                                             1)})
    return turns


def run_caller(args: argparse.Namespace) -> dict:
    peer = Peer(codec=args.codec, log_level=args.log_level, jitter_ms=args.jitter_ms)
    peer.register_account(f"sip:{args.caller_id}@127.0.0.1")
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    peer.dial(args.uri, headers)
    audio = _load(args.play) if args.play else np.zeros(0, dtype=np.int16)
    dtmf = [(float(at), digits) for digits, at in (d.split("@") for d in args.dtmf)]
    started = time.time()
    play_tick = None
    deadline = None
    try:
        while time.time() - started < args.timeout:
            peer.pump(10)
            if peer.state.disconnected_at is not None:
                break
            if peer.state.media_at is None:
                continue
            if play_tick is None and time.time() - peer.state.media_at >= args.wait:
                peer.port.play(audio)
                play_tick = peer.port.start_tick
                play_started = time.time()
                deadline = play_started + len(audio) / RATE + args.tail
            if play_tick is not None:
                elapsed = time.time() - play_started
                while dtmf and elapsed >= dtmf[0][0]:
                    peer.send_dtmf(dtmf.pop(0)[1], args.dtmf_method)
                asked = args.hangup_after is not None and elapsed >= args.hangup_after
                played = deadline is not None and time.time() >= deadline and not args.stay
                if asked or played:
                    peer.hangup()
        sent, received = peer.audio()
        ended_by = "caller" if peer.we_hung_up else \
            ("ivr" if peer.state.disconnected_at else "timeout")
    finally:
        peer.close()
    play_from = (play_tick or 0) * FRAME / RATE
    result = {"status": peer.state.status, "reason": peer.state.reason,
              "connected": peer.state.confirmed_at is not None, "codec": peer.state.codec,
              "setup_ms": None if peer.state.confirmed_at is None else
              round((peer.state.confirmed_at - peer.state.invite_sent_at) * 1000, 1),
              "ended_by": ended_by,
              "seconds": round(len(received) / RATE, 2),
              "turns": latency_report(sent, received, play_from) if args.play else [],
              "reply_onsets_s": [round(t - play_from, 3) for t in audible_onsets(received)],
              "frames_missing": peer.port.missing, "transferred": peer.state.transferred}
    if args.record:
        both = np.stack([sent[:len(received)], received], axis=1)
        write_wav(args.record, both, RATE)
    return result


def run_agent(args: argparse.Namespace) -> dict:
    peer = Peer(port=args.listen_port, codec=args.codec, log_level=args.log_level,
                jitter_ms=args.jitter_ms)
    peer.register_account(f"sip:agent@127.0.0.1:{args.listen_port}")
    peer.answer_code = args.answer_code
    peer.ring_s = args.ring
    audio = _load(args.play) if args.play else None
    started = time.time()
    print(json.dumps({"event": "listening", "address": peer.local}), flush=True)
    played = False
    try:
        while time.time() - started < args.timeout:
            peer.pump(10)
            state = peer.state
            if state.disconnected_at is not None and time.time() - state.disconnected_at > 0.3:
                break
            if audio is not None and not played and state.media_at is not None and \
                    time.time() - state.media_at >= args.wait:
                peer.port.play(audio)
                played = True
            if args.hangup_after is not None and state.media_at is not None and \
                    time.time() - state.media_at >= args.hangup_after:
                peer.hangup()
        sent, received = peer.audio()
    finally:
        peer.close()
    if args.record:
        write_wav(args.record, np.stack([sent, received], axis=1), RATE)
    return {"calls_seen": peer.state.calls_seen, "status": peer.state.status,
            "connected": peer.state.confirmed_at is not None, "codec": peer.state.codec,
            "headers": peer.state.headers, "seconds": round(len(received) / RATE, 2),
            "transferred": peer.state.transferred,
            "heard_onsets_s": [round(t, 3) for t in audible_onsets(received)]}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivr call", description=__doc__.split("\n\n")[0])
    parser.add_argument("uri", nargs="?", help="SIP URI to call (caller mode)")
    parser.add_argument("--play", help="recording to play once the call is up")
    parser.add_argument("--record", help="write both sides as a stereo WAV (left: ours)")
    parser.add_argument("--wait", type=float, default=1.0,
                        help="seconds between media up and playing (let the greeting pass)")
    parser.add_argument("--tail", type=float, default=4.0,
                        help="seconds to stay on after the recording ends")
    parser.add_argument("--stay", action="store_true", help="never hang up first")
    parser.add_argument("--hangup-after", type=float, help="hang up this long after playing "
                        "starts (answer mode: after media is up)")
    parser.add_argument("--dtmf", action="append", default=[],
                        help="DIGITS@SECONDS after playing starts (repeatable)")
    parser.add_argument("--dtmf-method", choices=["rfc4733", "info"], default="rfc4733")
    parser.add_argument("--caller-id", default="+15550000001", help="user part of From")
    parser.add_argument("--header", action="append", default=[], help="NAME: VALUE")
    parser.add_argument("--codec", choices=["PCMU", "PCMA", "G722"], default="PCMU")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--answer", action="store_true", help="agent mode: answer one call")
    parser.add_argument("--listen-port", type=int, default=5070)
    parser.add_argument("--answer-code", type=int, default=200,
                        help="answer mode: 200, or 486 (busy), 603 (decline); 180 never answers")
    parser.add_argument("--ring", type=float, default=0.2, help="answer mode: ring seconds")
    parser.add_argument("--log-level", type=int, default=0)
    parser.add_argument("--jitter-ms", type=int, help="this peer's jitter buffer prefetch "
                        "(ms); default: PJSIP's adaptive default")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.answer and not args.uri:
        print("ivr call: give a SIP URI to call, or --answer", file=sys.stderr)
        return 2
    if args.play and not Path(args.play).exists():
        print(f"ivr call: {args.play}: no such file", file=sys.stderr)
        return 2
    result = run_agent(args) if args.answer else run_caller(args)
    print(json.dumps(result), flush=True)
    return 0 if (result.get("connected") or args.answer_code != 200) else 1


if __name__ == "__main__":
    sys.exit(main())
