"""Raw SIP over loopback for hostile-input work: the crash corpus, the fuzzer and the flood.

Shared by the tests (tests/sip/hostile.py, tests/sip/fuzz.py, tests/test_sip_hostile.py) and the
campaign (``python -m bench.sip_fuzz``); standard library only, so it needs no SIP stack.

Nothing sent from here may make the server under test talk to another machine. The RFC 4475
messages name hosts in 192.0.2.0/24 and example.com, and a SIP server answers to the Via address
(``received``/``maddr`` included), sends BYE to the Contact, RTP to the SDP ``c=`` host and may
resolve any of these names through DNS. Two rules, applied to every message before it is sent:

1. **Rewrite** (:func:`rewrite`): every IPv4 literal outside 127.0.0.0/8, every bracketed IPv6
   literal and every dotted host name anywhere in the message (head and body) becomes the
   sender's own loopback address; the top Via's sent-by and every Contact get the sender's port
   (so answers come back to it), the top Via's transport becomes the one the message is sent
   over, SDP ``c=IN IP6`` becomes ``IN IP4`` and ``m=`` ports point at the sender's RTP sink.
   Content-Length is corrected only where it was right before the rewrite (a deliberately wrong
   one stays wrong).
2. **Guard** (:func:`unsafe_reasons`): the bytes about to be sent are scanned again, as a whole
   and at every place a SIP stack takes an address from (URI hosts, Via sent-by, ``maddr``,
   ``received``, SDP ``c=`` and ``a=rtcp``). Every such host must be a 127.0.0.0/8 literal,
   ``::1``, ``0.0.0.0`` (delivered locally on Linux), ``localhost`` (/etc/hosts), or a name that
   cannot be put in a DNS query at all (a label over 63 or a name over 253 characters: the
   resolver refuses it without sending anything). No dotted name and no other IPv4 literal may be
   left anywhere. A message that fails is not sent (:class:`UnsafeMessage`); the corpus counts
   these, the fuzzer draws another mutation.

Chosen over a network namespace because it needs neither root nor ``ip netns`` and it also
covers the fuzzer, whose mutations can move an address anywhere. The test server binds SIP to
127.0.0.1, so its signalling cannot leave the machine either way (Linux refuses a loopback source
towards another interface); the rules above protect RTP and DNS as well.
"""

from __future__ import annotations

import ipaddress
import queue
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

# --------------------------------------------------------------------------------------------
# Addresses: what may appear where a SIP stack takes a host from


class UnsafeMessage(ValueError):
    """A message that could make the server send to, or resolve, something off this machine."""


_TOKEN = re.compile(rb"[A-Za-z0-9_.\-]+")
_DOTTED_DIGITS = re.compile(rb"\d+(?:\.\d+)+")
_BRACKETED = re.compile(rb"\[[0-9A-Za-z:.%]*\]")
_BRANCH_BEFORE = re.compile(rb"(?i)(?:branch|tag)\s*=\s*$")  # identifiers, never resolved


def _is_loopback_quad(host: bytes) -> bool:
    parts = host.split(b".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        return False
    values = [int(p) for p in parts]
    return all(v <= 255 for v in values) and values[0] == 127


def is_safe_host(host: bytes | str) -> bool:
    """Whether a host a SIP stack may send to or resolve keeps the traffic on this machine."""
    if isinstance(host, str):
        host = host.encode("latin-1", "replace")
    host = host.strip()
    if host.startswith(b"[") and host.endswith(b"]"):
        host = host[1:-1]
    if not host:
        return True  # nothing to send to
    if _is_loopback_quad(host) or host in (b"::1", b"0.0.0.0") or host.lower() == b"localhost":
        return True
    # Not expressible as a DNS query: glibc refuses such a name without sending a packet.
    return len(host) > 253 or any(len(label) > 63 for label in host.split(b"."))


_URI = re.compile(rb"(?i)\bsips?\s*:")
_URI_END = re.compile(rb"[\s<>\"]")
_HOST = re.compile(rb"\[[^\]\s]*\]|[A-Za-z0-9_.\-]*")
_SENT_BY = re.compile(rb"(?i)(SIP\s*/\s*2\.0\s*/\s*)([A-Za-z0-9\-_.!%*+`'~]+)(\s+)"
                      rb"(\[[^\]\s]*\]|[A-Za-z0-9_.\-]+)((?:\s*:\s*\d+)?)")
_VIA_PARAM_HOST = re.compile(rb"(?i)\b(?:maddr|received)\s*=\s*(\[[^\]\s]*\]|[A-Za-z0-9_.\-]+)")
_SDP_CONN = re.compile(rb"(?im)^[ \t]*(?:c[ \t]*=[ \t]*IN|a[ \t]*=[ \t]*rtcp[ \t]*:[ \t]*\d*"
                       rb"[ \t]+IN)[ \t]+IP[46][ \t]+([^\s/]*)")


_CALL_ID_LINE = re.compile(rb"(?i)(?:call-id|i)[ \t]*:")
_NAME = re.compile(rb"(?:[A-Za-z0-9_\-]+\.)+[A-Za-z0-9_\-]+")


def _needs_rewrite(data: bytes, match: re.Match) -> bool:
    """Whether a token (a maximal run of host characters) is an address to take out: an IPv4
    literal outside 127/8, or a dotted name. Never resolved, so left alone: branch and tag
    values, URI user parts and Call-IDs."""
    token = match.group(0)
    if not _NAME.fullmatch(token) or _is_loopback_quad(token) or token == b"0.0.0.0":
        return False
    if _DOTTED_DIGITS.fullmatch(token):
        return token.count(b".") == 3  # '2.0', 'q=0.5': only a host where a host goes
    if _BRANCH_BEFORE.search(data[max(0, match.start() - 16):match.start()]):
        return False
    if data[match.end():match.end() + 1] == b"@":
        return False  # a URI's user part
    line = data[data.rfind(b"\n", 0, match.start()) + 1:match.start()]
    if _CALL_ID_LINE.match(line):
        return False  # Call-IDs stay as sent: they tell the messages apart
    return not is_safe_host(token)


def _uri_hosts(text: bytes) -> list[bytes]:
    hosts = []
    for match in _URI.finditer(text):
        rest = text[match.end():]
        end = _URI_END.search(rest)
        token = rest[:end.start()] if end else rest
        hostpart = token.rsplit(b"@", 1)[-1] if b"@" in token else token
        hosts.append(_HOST.match(hostpart).group(0))
    return hosts


def unsafe_reasons(message: bytes) -> list[str]:
    """Why ``message`` could make a SIP server talk to another machine (empty: it cannot)."""
    reasons = []
    for match in _TOKEN.finditer(message):
        token = match.group(0)
        if _needs_rewrite(message, match):
            kind = "IPv4 literal" if _DOTTED_DIGITS.fullmatch(token) else "host name"
            reasons.append(f"{kind} {token[:40]!r}")
    for match in _BRACKETED.finditer(message):
        if match.group(0) != b"[::1]":
            reasons.append(f"IPv6 literal {match.group(0)[:40]!r}")
    hosts = _uri_hosts(message)
    hosts += [m.group(4) for m in _SENT_BY.finditer(message)]
    hosts += [m.group(1) for m in _VIA_PARAM_HOST.finditer(message)]
    hosts += [m.group(1) for m in _SDP_CONN.finditer(message)]
    reasons += [f"host {h[:40]!r} where an address goes" for h in hosts if not is_safe_host(h)]
    return reasons


def check_safe(message: bytes) -> bytes:
    reasons = unsafe_reasons(message)
    if reasons:
        raise UnsafeMessage("; ".join(reasons[:3]))
    return message


# --------------------------------------------------------------------------------------------
# Rewriting a message to the sender's loopback socket

_SDP_IP6 = re.compile(rb"(?im)^([ \t]*c[ \t]*=[ \t]*IN[ \t]+)IP6[ \t]+([0-9A-Za-z:._\-]+)")
_SDP_MEDIA = re.compile(rb"(?im)^([ \t]*m[ \t]*=[ \t]*[A-Za-z]+[ \t]+)(\d+)")
_CONTENT_LENGTH = re.compile(rb"(?im)^((?:content-length|l)[ \t]*:[ \t]*)(\d+)")


def split_message(message: bytes) -> tuple[bytes, bytes, bytes]:
    """(head, separator, body); the head ends at the first empty line (CRLF or bare LF)."""
    match = re.search(rb"\r\n\r\n|\n\n", message)
    if not match:
        return message, b"", b""
    return message[:match.start()], match.group(0), message[match.end():]


def _header_spans(head: bytes, names: tuple[bytes, ...]) -> list[tuple[int, int]]:
    """Byte ranges of the header fields called ``names`` (folded lines included)."""
    spans, start, current = [], None, False
    offset = 0
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and offset:
            offset += len(line)
            continue
        if current:
            spans.append((start, offset))
        key = line.split(b":", 1)[0].strip().lower() if b":" in line else None
        current, start = key in names, offset
        offset += len(line)
    if current:
        spans.append((start, offset))
    return spans


def _hosts_to(data: bytes, host: bytes) -> bytes:
    data = _TOKEN.sub(lambda m: host if _needs_rewrite(data, m) else m.group(0), data)
    return _BRACKETED.sub(lambda m: m.group(0) if m.group(0) == b"[::1]" else host, data)


def content_lengths(head: bytes) -> list[int]:
    return [int(m.group(2)) for m in _CONTENT_LENGTH.finditer(head)]


def set_content_length(message: bytes) -> bytes:
    """Content-Length made equal to the body (the single header, or one added)."""
    head, sep, body = split_message(message)
    if not sep:
        return message
    if len(_CONTENT_LENGTH.findall(head)) == 1:
        head = _CONTENT_LENGTH.sub(lambda m: m.group(1) + str(len(body)).encode(), head)
    return head + sep + body


def rewrite(message: bytes, host: str, port: int, *, media_port: int | None = None,
            transport: str = "UDP") -> bytes:
    """``message`` addressed from ``host:port`` (see the module notes); raises
    :class:`UnsafeMessage` when the result would still name anything off this machine."""
    local = host.encode()
    head, sep, body = split_message(message)
    lengths = content_lengths(head)
    length_right = len(lengths) == 1 and lengths[0] == len(body)
    head, body = _hosts_to(head, local), _hosts_to(body, local)
    sent_by = _SENT_BY.search(head)
    if sent_by:
        hostport = local + b":%d" % port
        if len(sent_by.group(4)) > 63:  # a deliberately overlong host: kept (rport answers)
            hostport = sent_by.group(4) + sent_by.group(5)
        head = (head[:sent_by.start()] + sent_by.group(1) + transport.encode() + sent_by.group(3)
                + hostport + head[sent_by.end():])
    for start, end in reversed(_header_spans(head, (b"contact", b"m"))):
        value = re.sub(rb"(?i)(sips?:(?:[^@\s<>,\"]*@)?)" + re.escape(local) +
                       rb"(?::\d+)?", lambda m: m.group(1) + local + b":%d" % port,
                       head[start:end])
        head = head[:start] + value + head[end:]
    body = _SDP_IP6.sub(lambda m: m.group(0) if is_safe_host(m.group(2)) else
                        m.group(1) + b"IP4 " + local, body)
    if media_port is not None:
        body = _SDP_MEDIA.sub(lambda m: m.group(1) + (m.group(2) if m.group(2) == b"0"
                                                      else b"%d" % media_port), body)
    result = head + sep + body
    if length_right:
        result = set_content_length(result)
    return check_safe(result)


# --------------------------------------------------------------------------------------------
# Reading what comes back

_COMPACT = {b"i": b"call-id", b"f": b"from", b"t": b"to", b"v": b"via", b"m": b"contact",
            b"l": b"content-length", b"c": b"content-type"}


def headers(message: bytes, name: str) -> list[bytes]:
    """Values of header ``name`` (compact forms understood, folding joined)."""
    wanted = name.lower().encode()
    values, current = [], False
    head = split_message(message)[0]
    for line in head.splitlines()[1:]:
        if line[:1] in (b" ", b"\t"):
            if current:
                values[-1] += b" " + line.strip()
            continue
        key, sep, value = line.partition(b":")
        key = key.strip().lower()
        current = bool(sep) and _COMPACT.get(key, key) == wanted
        if current:
            values.append(value.strip())
    return values


def header(message: bytes, name: str) -> bytes | None:
    values = headers(message, name)
    return values[0] if values else None


def call_id_of(message: bytes) -> bytes | None:
    value = header(message, "Call-ID")
    return re.sub(rb"\s+", b"", value) if value is not None else None


@dataclass
class Response:
    code: int
    raw: bytes
    at: float

    @property
    def cseq(self) -> tuple[int | None, bytes]:
        value = header(self.raw, "CSeq") or b""
        parts = value.split()
        number = int(parts[0]) if parts and parts[0].isdigit() else None
        return number, (parts[-1].upper() if len(parts) > 1 else b"")

    @property
    def call_id(self) -> bytes | None:
        return call_id_of(self.raw)


_STATUS = re.compile(rb"SIP/2\.0 (\d{3})")


def parse_stream(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete messages at the front of a TCP byte stream, and what is left over."""
    messages = []
    while True:
        buffer = buffer.lstrip(b"\r\n")
        head, sep, body = split_message(buffer)
        if not sep:
            return messages, buffer
        lengths = content_lengths(head)
        size = lengths[0] if lengths else 0
        if len(body) < size:
            return messages, buffer
        messages.append(head + sep + body[:size])
        buffer = body[size:]


# --------------------------------------------------------------------------------------------
# A loopback SIP agent: sends, collects answers, ACKs and hangs up what the server answered


def new_branch() -> bytes:
    return b"z9hG4bK" + uuid.uuid4().hex[:16].encode()


@dataclass
class Outcome:
    """What came back for one message."""

    codes: list[int] = field(default_factory=list)  # every response to it, in order
    sent: bool = True
    skipped: str | None = None  # why it was not sent (unsafe after rewriting)

    @property
    def final(self) -> int | None:
        return next((c for c in self.codes if c >= 200), None)


class Agent:
    """A UDP SIP socket on one loopback address with an RTP sink beside it.

    A thread reads everything the server sends: responses are counted and queued; a 2xx to an
    INVITE is ACKed and the call hung up at once (BYE), other final answers to an INVITE are
    ACKed; requests from the server (BYE, OPTIONS, ...) get 200. Answers to its own ACK/BYE are
    kept apart from the answers to what the caller sent."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1",
                 hang_up: bool = True) -> None:
        self.target = target
        self.host = host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # RTP lands here, unread
        self.media.bind((host, 0))
        self.media_port = self.media.getsockname()[1]
        self.hang_up = hang_up
        self.codes: Counter[int] = Counter()
        self.requests: Counter[bytes] = Counter()  # requests the server sent us, by method
        self.answered_calls = 0
        self.inbox: queue.Queue[Response] = queue.Queue()
        self._own: set[tuple[bytes | None, int | None, bytes]] = set()
        self._acked: set[tuple[bytes | None, int | None]] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True, name="sip-agent")
        self._thread.start()

    # sending --------------------------------------------------------------------------------

    def prepare(self, message: bytes, transport: str = "UDP") -> bytes:
        return rewrite(message, self.host, self.port, media_port=self.media_port,
                       transport=transport)

    def send(self, data: bytes) -> None:
        check_safe(data)
        self.sock.sendto(data, self.target)

    def exchange(self, data: bytes, wait_s: float = 1.0, settle_s: float = 0.3) -> Outcome:
        """Send ``data`` and collect the answers to it: until ``settle_s`` after the first
        final answer, or ``wait_s`` without one."""
        call_id = call_id_of(data)
        while not self.inbox.empty():
            self.inbox.get_nowait()
        outcome = Outcome()
        self.send(data)
        deadline = time.time() + wait_s
        while time.time() < deadline:
            try:
                response = self.inbox.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                break
            if call_id is not None and response.call_id != call_id:
                continue  # a late answer to an earlier message
            outcome.codes.append(response.code)
            if response.code >= 200:
                deadline = min(deadline, time.time() + settle_s)
        return outcome

    # the reader thread ----------------------------------------------------------------------

    def _read(self) -> None:
        self.sock.settimeout(0.2)
        while not self._closed:
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self._handle(data, lambda reply: self.sock.sendto(reply, self.target), "UDP")
            except Exception:  # noqa: BLE001 - a weird answer must not stop the reader
                pass

    def _handle(self, data: bytes, send, transport: str) -> None:
        status = _STATUS.match(data)
        if status is None:
            method = data.split(b" ", 1)[0]
            if method and method != b"ACK" and not data.startswith(b"SIP/"):
                with self._lock:
                    self.requests[method] += 1
                send(_reply_200(data))
            return
        response = Response(int(status.group(1)), data, time.time())
        number, method = response.cseq
        key = (response.call_id, number, method)
        with self._lock:
            own = key in self._own
            if not own:
                self.codes[response.code] += 1
        if own:
            return
        self.inbox.put(response)
        if method == b"INVITE" and response.code >= 200:
            first = (response.call_id, number) not in self._acked
            self._acked.add((response.call_id, number))
            if response.code < 300:
                send(self._in_dialog(response, b"ACK", number or 1, transport))
                if first:
                    with self._lock:
                        self.answered_calls += 1
                if first and self.hang_up:
                    bye = self._in_dialog(response, b"BYE", (number or 1) + 1, transport)
                    self._own.add((response.call_id, (number or 1) + 1, b"BYE"))
                    send(bye)
            else:
                send(self._ack_failure(response, transport))

    def _in_dialog(self, response: Response, method: bytes, cseq: int, transport: str) -> bytes:
        contact = header(response.raw, "Contact") or b""
        found = re.search(rb"<([^>]+)>", contact)
        uri = found.group(1) if found else (contact.split(b";")[0] or
                                            b"sip:%s:%d" % (self.target[0].encode(),
                                                            self.target[1]))
        return (method + b" " + uri + b" SIP/2.0\r\n"
                b"Via: SIP/2.0/%s %s:%d;branch=%s;rport\r\n" % (
                    transport.encode(), self.host.encode(), self.port, new_branch()) +
                b"Max-Forwards: 70\r\n"
                b"From: " + (header(response.raw, "From") or b"<sip:x@127.0.0.1>") + b"\r\n"
                b"To: " + (header(response.raw, "To") or b"<sip:x@127.0.0.1>") + b"\r\n"
                b"Call-ID: " + (header(response.raw, "Call-ID") or b"none") + b"\r\n"
                b"CSeq: %d %s\r\n" % (cseq, method) +
                b"Content-Length: 0\r\n\r\n")

    def _ack_failure(self, response: Response, transport: str) -> bytes:
        number = response.cseq[0] or 1
        via = header(response.raw, "Via") or b"SIP/2.0/%s %s:%d;branch=%s" % (
            transport.encode(), self.host.encode(), self.port, new_branch())
        return (b"ACK sip:ivr@%s:%d SIP/2.0\r\n" % (self.target[0].encode(), self.target[1]) +
                b"Via: " + via + b"\r\n"
                b"Max-Forwards: 70\r\n"
                b"From: " + (header(response.raw, "From") or b"<sip:x@127.0.0.1>") + b"\r\n"
                b"To: " + (header(response.raw, "To") or b"<sip:x@127.0.0.1>") + b"\r\n"
                b"Call-ID: " + (header(response.raw, "Call-ID") or b"none") + b"\r\n"
                b"CSeq: %d ACK\r\n" % number +
                b"Content-Length: 0\r\n\r\n")

    # TCP ------------------------------------------------------------------------------------

    def tcp_exchange(self, data: bytes, wait_s: float = 1.5, settle_s: float = 0.3) -> Outcome:
        """Send ``data`` over a new TCP connection from this agent's address and collect the
        answers on it; the connection is closed afterwards."""
        check_safe(data)
        outcome = Outcome()
        conn = socket.create_connection(self.target, timeout=2.0,
                                        source_address=(self.host, 0))
        try:
            conn.sendall(data)
            buffer = b""
            deadline = time.time() + wait_s
            while time.time() < deadline:
                conn.settimeout(max(0.01, deadline - time.time()))
                try:
                    chunk = conn.recv(65535)
                except TimeoutError:
                    break
                if not chunk:
                    break
                messages, buffer = parse_stream(buffer + chunk)
                for message in messages:
                    status = _STATUS.match(message)
                    self._handle(message, conn.sendall, "TCP")
                    if status is None:
                        continue
                    outcome.codes.append(int(status.group(1)))
                    if int(status.group(1)) >= 200:
                        deadline = min(deadline, time.time() + settle_s)
            while not self.inbox.empty():
                self.inbox.get_nowait()
        finally:
            conn.close()
        return outcome

    def close(self) -> None:
        self._closed = True
        self._thread.join(timeout=1.0)
        self.sock.close()
        self.media.close()


def _reply_200(request: bytes) -> bytes:
    keep = []
    for line in split_message(request)[0].split(b"\r\n")[1:]:
        key = line.split(b":", 1)[0].strip().lower()
        if _COMPACT.get(key, key) in (b"via", b"from", b"to", b"call-id", b"cseq"):
            keep.append(line)
    return b"SIP/2.0 200 OK\r\n" + b"\r\n".join(keep) + b"\r\nContent-Length: 0\r\n\r\n"


# --------------------------------------------------------------------------------------------
# A call held over raw sockets, with RTP arrival times taken by the kernel

PCMU_SILENCE = b"\xff" * 160
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not export it


def sdp_offer(host: str, rtp_port: int, extra: bytes = b"") -> bytes:
    return (b"v=0\r\no=hostile 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"
            b"m=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
            % (host.encode(), host.encode(), rtp_port) + extra)


def invite_message(target: tuple[str, int], host: str, port: int, rtp_port: int, *,
                   call_id: bytes, caller: bytes = b"+15550000001", cseq: int = 1,
                   from_tag: bytes = b"hostile", to: bytes | None = None,
                   sdp: bytes | None = None, extra_headers: bytes = b"") -> bytes:
    """An INVITE (or, with ``to`` carrying the server's tag, a re-INVITE) with a PCMU offer."""
    body = sdp_offer(host, rtp_port) if sdp is None else sdp
    uri = b"sip:+18005550100@%s:%d" % (target[0].encode(), target[1])
    return (b"INVITE " + uri + b" SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP %s:%d;branch=%s;rport\r\n" % (host.encode(), port, new_branch()) +
            b"Max-Forwards: 70\r\n"
            b'From: "Hostile Tester" <sip:' + caller + b"@%s:%d>;tag=" % (host.encode(), port) +
            from_tag + b"\r\n"
            b"To: " + (to or b"<" + uri + b">") + b"\r\n"
            b"Call-ID: " + call_id + b"\r\n"
            b"CSeq: %d INVITE\r\n" % cseq +
            b"Contact: <sip:" + caller + b"@%s:%d>\r\n" % (host.encode(), port) + extra_headers +
            b"Content-Type: application/sdp\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


class RawCall:
    """One call from ``host`` to the server over raw sockets: INVITE with a PCMU offer, ACK,
    RTP both ways (silence out, every packet in stamped by the kernel), re-INVITEs, BYE."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1",
                 caller: bytes = b"+15550000001") -> None:
        self.target, self.host, self.caller = target, host, caller
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.rtp.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.rtp.bind((host, 0))
        self.rtp_port = self.rtp.getsockname()[1]
        self.call_id = b"hostile-" + uuid.uuid4().hex.encode()
        self.from_tag = uuid.uuid4().hex[:10].encode()
        self.cseq = 1
        self.to: bytes | None = None
        self.remote_target = b"sip:+18005550100@%s:%d" % (target[0].encode(), target[1])
        self.remote_media: tuple[str, int] | None = None
        self.arrivals: list[float] = []  # kernel receive time of each RTP packet (s)
        self.ended_by_server = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _head(self, method: bytes, uri: bytes, cseq: int) -> bytes:
        return (method + b" " + uri + b" SIP/2.0\r\n"
                b"Via: SIP/2.0/UDP %s:%d;branch=%s;rport\r\n" % (
                    self.host.encode(), self.port, new_branch()) +
                b"Max-Forwards: 70\r\n"
                b'From: "Hostile Tester" <sip:' + self.caller +
                b"@%s:%d>;tag=%s\r\n" % (self.host.encode(), self.port, self.from_tag) +
                b"To: " + (self.to or b"<" + self.remote_target + b">") + b"\r\n"
                b"Call-ID: " + self.call_id + b"\r\n"
                b"CSeq: %d %s\r\n" % (cseq, method))

    def invite_bytes(self, sdp: bytes | None = None) -> bytes:
        return invite_message(self.target, self.host, self.port, self.rtp_port,
                              call_id=self.call_id, caller=self.caller, cseq=self.cseq,
                              from_tag=self.from_tag, to=self.to, sdp=sdp)

    def _transaction(self, message: bytes, cseq: int, method: bytes, timeout_s: float,
                     retransmit: bool = True) -> Response | None:
        """Send ``message``; the final answer to it (ACKed when it answers an INVITE)."""
        check_safe(message)
        self.sock.sendto(message, self.target)
        deadline, resend, interval = time.time() + timeout_s, time.time() + 0.5, 0.5
        provisional = False
        while time.time() < deadline:
            self.sock.settimeout(0.1)
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                if retransmit and not provisional and time.time() >= resend:
                    self.sock.sendto(message, self.target)
                    interval = min(interval * 2, 4.0)
                    resend = time.time() + interval
                continue
            status = _STATUS.match(data)
            if status is None:
                self._answer(data)
                continue
            response = Response(int(status.group(1)), data, time.time())
            if response.call_id != self.call_id or response.cseq != (cseq, method):
                continue
            if response.code < 200:
                provisional = True
                continue
            if method == b"INVITE":
                self._ack(response, cseq)
            return response
        return None

    def _ack(self, response: Response, cseq: int) -> None:
        if self.to is None or response.code < 300:
            self.to = header(response.raw, "To")
        if response.code < 300:
            found = re.search(rb"<([^>]+)>", header(response.raw, "Contact") or b"")
            if found:
                self.remote_target = found.group(1)
            uri = self.remote_target
            via = None
        else:
            uri = b"sip:+18005550100@%s:%d" % (self.target[0].encode(), self.target[1])
            via = header(response.raw, "Via")
        head = self._head(b"ACK", uri, cseq)
        if via is not None:
            head = re.sub(rb"Via: [^\r]*", b"Via: " + via.replace(b"\\", b"\\\\"), head,
                          count=1)
        self.sock.sendto(head + b"Content-Length: 0\r\n\r\n", self.target)

    def _answer(self, data: bytes) -> None:
        method = data.split(b" ", 1)[0]
        if data.startswith(b"SIP/2.0") or method == b"ACK":
            return
        if method == b"BYE":
            self.ended_by_server = True
        self.sock.sendto(_reply_200(data), self.target)

    def invite(self, timeout_s: float = 20.0) -> int:
        """Place the call; returns the final status (0: no answer)."""
        response = self._transaction(self.invite_bytes(), self.cseq, b"INVITE", timeout_s)
        if response is None:
            return 0
        if response.code < 300:
            self.remote_media = _sdp_media(split_message(response.raw)[2]) or self.remote_media
        return response.code

    def reinvite(self, message: bytes | None = None, timeout_s: float = 5.0) -> int:
        """A re-INVITE in this dialog (``message``: already built, e.g. mutated); returns the
        final status (0: none)."""
        self.cseq += 1
        data = message if message is not None else self.invite_bytes()
        response = self._transaction(data, self.cseq, b"INVITE", timeout_s, retransmit=False)
        return 0 if response is None else response.code

    def start_media(self) -> None:
        """RTP silence out every 20 ms; every packet in is stamped with its kernel arrival."""
        self._threads = [threading.Thread(target=self._rtp_out, daemon=True),
                         threading.Thread(target=self._rtp_in, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _rtp_out(self) -> None:
        seq, ts, ssrc = 0, 0, 0x1234ABCD
        next_at = time.monotonic()
        while not self._stop.is_set():
            if self.remote_media:
                header_bytes = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF,
                                           ssrc)
                try:
                    self.rtp.sendto(header_bytes + self._next_payload(), self.remote_media)
                except OSError:
                    pass
                seq, ts = seq + 1, ts + 160
            next_at += 0.02
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _next_payload(self) -> bytes:
        """The next 20 ms of PCMU to send (silence; a subclass may speak)."""
        return PCMU_SILENCE

    def _rtp_in(self) -> None:
        self.rtp.settimeout(0.2)
        while not self._stop.is_set():
            try:
                packet, ancillary, _, _ = self.rtp.recvmsg(2048, 64)
            except TimeoutError:
                continue
            except OSError:
                return
            stamp = None
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanos = struct.unpack("qq", data[:16])
                    stamp = seconds + nanos / 1e9
            self._received(stamp if stamp is not None else time.time(), packet)

    def _received(self, stamp: float, packet: bytes) -> None:
        """One RTP packet from the server, with its kernel arrival time (s)."""
        self.arrivals.append(stamp)

    def max_gap_ms(self, since: float | None = None, until: float | None = None) -> float | None:
        """The longest time between two RTP packets from the server (wall clock window)."""
        times = [t for t in self.arrivals if (since is None or t >= since)
                 and (until is None or t <= until)]
        if len(times) < 2:
            return None
        return max(b - a for a, b in zip(times, times[1:], strict=False)) * 1000

    def poll(self, seconds: float) -> None:
        """Answer what the server sends for ``seconds`` (BYE, OPTIONS, session refresh)."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            self.sock.settimeout(max(0.01, min(0.2, deadline - time.time())))
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self._answer(data)

    def bye(self, timeout_s: float = 5.0) -> int:
        self.cseq += 1
        if self.ended_by_server:
            return 0
        message = self._head(b"BYE", self.remote_target, self.cseq) + b"Content-Length: 0\r\n\r\n"
        response = self._transaction(message, self.cseq, b"BYE", timeout_s)
        return 0 if response is None else response.code

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=1.0)
        self.sock.close()
        self.rtp.close()


def _sdp_media(body: bytes) -> tuple[str, int] | None:
    conn = re.search(rb"(?m)^c=IN IP4 ([0-9.]+)", body)
    media = re.search(rb"(?m)^m=audio (\d+)", body)
    if not conn or not media:
        return None
    host = conn.group(1).decode()
    if not is_safe_host(host):
        return None
    return host, int(media.group(1))


# --------------------------------------------------------------------------------------------
# The seeded fuzzer

INVALID_BYTES = [b"\xff\xfe\xfd", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80",
                 b"\xe2\x82", b"\x00", b"\r", b"\n", b"\t", b"%00", b"%ff", b"\\", b'"', b"<>",
                 "ü€😀".encode(), "\u202e".encode(), b"\x1b[31m"]
LONG = [64, 254, 255, 256, 300, 1000, 3000]
SDP_CONN_HOSTS = [b"127.0.0.1", b"0.0.0.0", b"localhost", b"", b"::1", b"a" * 250, b"a" * 253,
                  b"a" * 254, b"a" * 255, b"a" * 300, b"b" * 1000, b"127.0.0.1/127",
                  b"127.0.0.1/127/3", b"127.0.0.1 x"]
SDP_LINES = [b"a=sendonly", b"a=recvonly", b"a=inactive", b"a=sendrecv", b"a=ptime:0",
             b"a=ptime:-1", b"a=ptime:100000", b"a=maxptime:4294967296", b"a=rtpmap:0",
             b"a=rtpmap:0 PCMU/0", b"a=rtpmap:101 telephone-event/8000000000",
             b"a=rtpmap:96 opus/48000/2", b"a=rtpmap:127 G722/8000/255",
             b"a=fmtp:101 " + b"9" * 3000, b"a=rtcp:0", b"a=rtcp:70000 IN IP4 127.0.0.1",
             b"a=rtcp:9 IN IP4 localhost", b"a=rtcp-mux", b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 "
             b"inline:" + b"A" * 500, b"a=" + b"x" * 1000, b"b=AS:-1", b"b=AS:99999999999999",
             b"m=audio 9 RTP/AVP 0", b"m=video 9 RTP/AVP 31", b"m=audio 0 RTP/AVP 0",
             b"m=image 9 udptl t38", b"c=IN IP6 ::1", b"c=IN IP4", b"o=", b"v=1", b"t=",
             b"s=" + b"s" * 2000, b"m=audio 70000 RTP/AVP 0", b"m=audio -1 RTP/AVP 0",
             b"m=audio 4000 RTP/SAVP 0", b"m=audio 4000 RTP/AVP " + b" ".join(
                 b"%d" % i for i in range(128)), b"m=audio 4000 RTP/AVP 999 -1 abc"]
CONTENT_LENGTHS = [b"-1", b"0", b"4294967296", b"99999999999999999999", b"abc", b"", b" 1 2",
                   b"0x10", b"+5", b"1e3"]
CSEQS = [b"-1 INVITE", b"0 INVITE", b"4294967296 INVITE", b"99999999999999999999 INVITE",
         b"1 BYE", b"1", b"INVITE", b"1 INVITE extra", b"abc INVITE", b"2147483648 INVITE"]


class Mutator:
    """Seeded mutations of a SIP message (``random.Random(seed)``: the same seed gives the
    same messages)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def mutate(self, message: bytes) -> tuple[bytes, list[str]]:
        ops = []
        length_mutated = False
        for _ in range(self.rng.choice((1, 1, 2, 2, 3))):
            name = self.rng.choice(self.OPS)
            message = getattr(self, "_" + name)(message)
            ops.append(name)
            length_mutated |= name == "content_length"
        if not length_mutated and self.rng.random() < 0.85:
            message = set_content_length(message)  # most mutations should reach the parsers
        return message, ops

    OPS = ["flip", "insert", "delete", "dup_header", "drop_header", "swap_headers",
           "content_length", "cseq", "bad_bytes", "long_token", "sdp_conn", "sdp_line",
           "sdp_drop", "sdp_truncate", "header_case", "folding", "bare_lf", "no_body"]

    def _lines(self, message: bytes) -> tuple[list[bytes], bytes, bytes]:
        head, sep, body = split_message(message)
        return head.split(b"\r\n"), sep or b"\r\n\r\n", body

    def _join(self, lines: list[bytes], sep: bytes, body: bytes) -> bytes:
        return b"\r\n".join(lines) + sep + body

    def _flip(self, m: bytes) -> bytes:
        data = bytearray(m)
        for _ in range(self.rng.randint(1, 4)):
            i = self.rng.randrange(len(data))
            data[i] ^= 1 << self.rng.randrange(8)
        return bytes(data)

    def _insert(self, m: bytes) -> bytes:
        i = self.rng.randrange(len(m) + 1)
        blob = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 16)))
        return m[:i] + blob + m[i:]

    def _delete(self, m: bytes) -> bytes:
        i = self.rng.randrange(len(m))
        return m[:i] + m[i + self.rng.randint(1, 24):]

    def _dup_header(self, m: bytes) -> bytes:
        lines, sep, body = self._lines(m)
        if len(lines) > 1:
            i = self.rng.randrange(1, len(lines))
            lines.insert(self.rng.randrange(1, len(lines) + 1), lines[i])
        return self._join(lines, sep, body)

    def _drop_header(self, m: bytes) -> bytes:
        lines, sep, body = self._lines(m)
        if len(lines) > 1:
            del lines[self.rng.randrange(1, len(lines))]
        return self._join(lines, sep, body)

    def _swap_headers(self, m: bytes) -> bytes:
        lines, sep, body = self._lines(m)
        i, j = self.rng.randrange(len(lines)), self.rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return self._join(lines, sep, body)

    def _replace_header(self, m: bytes, name: bytes, value: bytes) -> bytes:
        pattern = re.compile(rb"(?im)^(" + name + rb"[ \t]*:[ \t]*)[^\r\n]*")
        if not pattern.search(m):
            return m
        return pattern.sub(lambda x: x.group(1) + value, m, count=1)

    def _content_length(self, m: bytes) -> bytes:
        body = split_message(m)[2]
        value = self.rng.choice(CONTENT_LENGTHS + [b"%d" % (len(body) + 1), b"%d" % (
            len(body) + self.rng.randint(2, 5000)), b"%d" % max(0, len(body) - 1)])
        if self.rng.random() < 0.2:  # a second, disagreeing Content-Length
            head, sep, body = split_message(m)
            return head + b"\r\nContent-Length: " + value + sep + body
        return self._replace_header(m, b"content-length", value)

    def _cseq(self, m: bytes) -> bytes:
        return self._replace_header(m, b"cseq", self.rng.choice(CSEQS))

    def _bad_bytes(self, m: bytes) -> bytes:
        blob = b"".join(self.rng.choice(INVALID_BYTES) for _ in range(self.rng.randint(1, 4)))
        target = self.rng.choice([b'"Hostile Tester"', b"Hostile", b"Call-ID: ", b"+1555",
                                  b"sip:+18005550100", b"INVITE", b"s=-", b"o=hostile"])
        i = m.find(target)
        if i < 0:
            i = self.rng.randrange(len(m))
        else:
            i += self.rng.randrange(len(target) + 1)
        return m[:i] + blob + m[i:]

    def _long_token(self, m: bytes) -> bytes:
        n = self.rng.choice(LONG)
        filler = self.rng.choice([b"A", b"9", b"%", b" ", b";", b"a=", b"<"]) * n
        choice = self.rng.randrange(5)
        if choice == 0:
            return m.replace(b"Hostile Tester", filler[:n], 1)
        if choice == 1:
            return self._replace_header(m, b"call-id", b"long-" + b"x" * n)
        if choice == 2:
            return m.replace(b"+18005550100", b"1" * n, 1)
        if choice == 3:
            head, sep, body = split_message(m)
            return head + b"\r\nX-Long: " + filler + sep + body
        return m.replace(b"branch=", b"branch=" + b"b" * n, 1)

    def _sdp_conn(self, m: bytes) -> bytes:
        host = self.rng.choice(SDP_CONN_HOSTS)
        kind = self.rng.choice([b"IP4", b"IP4", b"IP6", b"XX"])
        return re.sub(rb"(?m)^c=IN IP4 [^\r\n]*", b"c=IN " + kind + b" " + host, m, count=1)

    def _sdp_line(self, m: bytes) -> bytes:
        head, sep, body = split_message(m)
        lines = body.split(b"\r\n")
        lines.insert(self.rng.randrange(len(lines) + 1), self.rng.choice(SDP_LINES))
        return head + sep + b"\r\n".join(lines)

    def _sdp_drop(self, m: bytes) -> bytes:
        head, sep, body = split_message(m)
        lines = [ln for ln in body.split(b"\r\n") if ln]
        if lines:
            del lines[self.rng.randrange(len(lines))]
        return head + sep + b"\r\n".join(lines) + b"\r\n"

    def _sdp_truncate(self, m: bytes) -> bytes:
        head, sep, body = split_message(m)
        return head + sep + body[:self.rng.randrange(len(body) + 1)]

    def _header_case(self, m: bytes) -> bytes:
        head, sep, body = split_message(m)
        return bytes(c ^ 0x20 if 65 <= (c | 0x20) - 0 <= 122 and chr(c).isalpha() and
                     self.rng.random() < 0.3 else c for c in head) + sep + body

    def _folding(self, m: bytes) -> bytes:
        return m.replace(b": ", self.rng.choice([b":\r\n ", b" : ", b":\t\t", b":\r\n\t"]), 1 +
                         self.rng.randrange(6))

    def _bare_lf(self, m: bytes) -> bytes:
        return m.replace(b"\r\n", b"\n", self.rng.randint(1, 12))

    def _no_body(self, m: bytes) -> bytes:
        head, sep, _ = split_message(m)
        return self._replace_header(head + sep, b"content-length", b"0")


@dataclass
class FuzzStats:
    sent: int = 0
    redrawn: int = 0  # mutations that would have named a host off this machine: drawn again
    ops: Counter = field(default_factory=Counter)
    codes: Counter = field(default_factory=Counter)
    answered_calls: int = 0
    reinvites: int = 0
    reinvite_codes: Counter = field(default_factory=Counter)
    calls_placed: int = 0
    log: list = field(default_factory=list)  # (index, source or "re-INVITE", bytes) as sent

    def as_dict(self) -> dict:
        return {"sent": self.sent, "redrawn": self.redrawn, "ops": dict(self.ops),
                "codes": {str(k): v for k, v in sorted(self.codes.items())},
                "answered_calls": self.answered_calls, "reinvites": self.reinvites,
                "reinvite_codes": {str(k): v for k, v in sorted(self.reinvite_codes.items())},
                "calls_placed": self.calls_placed}


def fuzz(target: tuple[str, int], *, count: int, seed: int, rate: float = 100.0,
         allowed_host: str = "127.0.0.1", refused_host: str | None = "127.0.0.2",
         reinvite_share: float = 0.1, alive=lambda: True, progress=None) -> FuzzStats:
    """``count`` mutated INVITEs at ``rate`` per second (seeded): most as new calls, half of
    those from a refused source when ``refused_host`` is given, and a share as re-INVITEs inside
    a call held open for them. Stops early when ``alive()`` turns false."""
    mutator = Mutator(seed)
    stats = FuzzStats()
    agents = [Agent(target, allowed_host)]
    if refused_host:
        agents.append(Agent(target, refused_host))
    holder: RawCall | None = None
    start = time.monotonic()
    try:
        for i in range(count):
            at = start + i / rate
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if i % 200 == 0 and not alive():
                break
            if progress and i % 500 == 0:
                progress(i, stats)
            reinvite = mutator.rng.random() < reinvite_share
            agent = agents[mutator.rng.randrange(len(agents))]  # drawn either way: the RNG
            # stream, so every message, depends on the seed alone, not on how the server answers
            if reinvite:
                if holder is None or holder.ended_by_server or holder.to is None:
                    if holder is not None:
                        holder.close()
                    holder = RawCall(target, allowed_host, caller=b"+15550009999")
                    stats.calls_placed += 1
                    if not 200 <= holder.invite(timeout_s=5.0) < 300:
                        holder.close()
                        holder = None
                if holder is not None:
                    holder.cseq += 1
                    base = holder.invite_bytes()
                    holder.cseq -= 1
                    message = _draw(mutator, base, stats)
                    stats.log.append((i, "re-INVITE", message))
                    code = holder.reinvite(message, timeout_s=1.0)
                    holder.poll(0.0)
                    stats.reinvites += 1
                    stats.reinvite_codes[code] += 1
                    stats.sent += 1
                    continue
            base = invite_message(target, agent.host, agent.port, agent.media_port,
                                  call_id=b"fuzz-%d-%d" % (seed, i), caller=b"+1555%07d" % i,
                                  from_tag=b"f%d" % i)
            message = _draw(mutator, base, stats)
            stats.log.append((i, agent.host, message))
            agent.send(message)
            stats.sent += 1
        time.sleep(1.0)  # the last answers
    finally:
        if holder is not None:
            if holder.to is not None and not holder.ended_by_server:
                holder.bye(timeout_s=2.0)
            holder.close()
        for agent in agents:
            stats.codes.update(agent.codes)
            stats.answered_calls += agent.answered_calls
            agent.close()
    return stats


def _draw(mutator: Mutator, base: bytes, stats: FuzzStats) -> bytes:
    for _ in range(50):
        message, ops = mutator.mutate(base)
        if not unsafe_reasons(message):
            stats.ops.update(ops)
            return message
        stats.redrawn += 1
    return base


# --------------------------------------------------------------------------------------------
# Prometheus text


def metric_total(text: str, name: str) -> float:
    """The sum of a metric's samples over all label sets in Prometheus text format."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            rest = line[len(name):]
            if rest[:1] in ("{", " "):
                try:
                    total += float(rest.rsplit(" ", 1)[-1])
                except ValueError:
                    pass
    return total


def loopback_aliases_work(host: str = "127.0.0.2") -> bool:
    """Whether this system can send from another 127/8 address (Linux: yes)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((host, 0))
        return True
    except OSError:
        return False


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
