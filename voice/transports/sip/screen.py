"""What to do with an out-of-dialog SIP request before PJSIP builds a dialog or media for it.

Pure functions over the request text, tested with literal messages. ``voice.transports.sip.guard``
calls them from PJSIP's receive path; an answer here costs one stateless response and nothing else,
which is what keeps a flood or a malformed request from reaching the parts of PJSIP that hold
sockets, call slots or assertions.

The checks come from what broke the pjsua2 wheel (PJSIP 2.15) when a worker was probed directly:
an SDP ``c=`` host longer than 253 characters trips an assertion in PJSIP's address code, and a
``c=`` host name makes PJSIP resolve it with blocking DNS on the SIP thread. Malformed framing
(RFC 4475 ``clerr``, ``multi01``, ``escruri``) is refused here rather than answered as a call.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from voice.transports.sip.messages import header_values

# Extensions this IVR understands in Require (RFC 3261 8.2.2.3: anything else gets 420).
SUPPORTED_EXTENSIONS = frozenset({"timer", "replaces", "100rel", "norefersub", "outbound",
                                  "path"})
# Headers that may appear only once in a request (RFC 3261 7.3.1; RFC 4475 multi01).
_SINGLE = ("call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type")
_METHOD = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")  # RFC 3261 token
# Methods PJSIP knows what to do with outside a dialog (it answers BYE/CANCEL with 481 itself).
KNOWN_METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO",
                           "PRACK", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE",
                           "PUBLISH"})
_MAX_HOST = 253  # DNS's limit; PJSIP asserts at 254


@dataclass(frozen=True)
class Answer:
    """A stateless final response, or ``code == 0``: drop the request without an answer."""

    code: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


DROP = Answer(0, "ignored")


@dataclass(frozen=True)
class Request:
    """The parts of a raw request the screen reads."""

    method: str
    uri: str
    head: str
    body: bytes
    in_dialog: bool

    @classmethod
    def parse(cls, raw: bytes) -> Request | None:
        """``None`` when the request line is not ``METHOD SP URI SP SIP/2.0`` exactly (RFC 3261
        25.1: single spaces, no leading space); PJSIP is more lenient, so the guard refuses
        what this cannot read rather than pass on what it has not screened."""
        head_bytes, sep, body = raw.partition(b"\r\n\r\n")
        if not sep:
            head_bytes, sep, body = raw.partition(b"\n\n")
        head = head_bytes.decode("utf-8", "surrogateescape")
        line = head.split("\n", 1)[0].rstrip("\r")
        parts = line.split(" ")
        if len(parts) != 3 or parts[2].upper() != "SIP/2.0" or not all(parts):
            return None
        method, uri = parts[0], parts[1]
        to = (header_values(head, "to") or [""])[0]
        in_dialog = re.search(r";\s*tag\s*=", to, re.IGNORECASE) is not None
        return cls(method=method, uri=uri, head=head, body=body, in_dialog=in_dialog)


def check_framing(req: Request) -> Answer | None:
    """400 for requests PJSIP would take but RFC 4475 says to reject."""
    if not _METHOD.match(req.method):
        return Answer(400, "Bad Request Line")
    if req.head[:1] in (" ", "\t"):
        return Answer(400, "Bad Request Line")
    for name in _SINGLE:
        if len(header_values(req.head, name)) > 1:
            return Answer(400, f"Duplicate {name.title()} Header")
    lengths = header_values(req.head, "content-length") + header_values(req.head, "l")
    if lengths:
        try:
            declared = int(lengths[0])
        except ValueError:
            return Answer(400, "Bad Content-Length")
        if declared < 0 or declared > len(req.body):
            return Answer(400, "Content-Length Beyond Body")
    if "?" in req.uri.split(";", 1)[0] and req.uri.lower().startswith(("sip:", "sips:")):
        # RFC 3261 19.1.1: headers in a Request-URI are not allowed (RFC 4475 escruri).
        return Answer(400, "Headers In Request-URI")
    return None


def check_require(req: Request) -> Answer | None:
    """420 with Unsupported for option tags we do not implement."""
    wanted = {tag.strip().lower() for value in header_values(req.head, "require")
              for tag in value.split(",") if tag.strip()}
    unknown = sorted(wanted - SUPPORTED_EXTENSIONS)
    if unknown:
        return Answer(420, "Bad Extension", (("Unsupported", ", ".join(unknown)),))
    return None


def sdp_problem(body: bytes) -> str | None:
    """Why an SDP offer cannot be taken safely, or ``None``.

    Connection addresses must be IP literals: a host name would be resolved by PJSIP with
    blocking DNS on the SIP thread, and one over 253 characters trips a PJSIP assertion.
    """
    text = body.decode("utf-8", "replace")
    audio = False
    for raw_line in re.split(r"\r?\n", text):  # PJSIP ends SDP lines at (CR)LF only
        line = raw_line.strip()
        if line.startswith("c="):
            problem = _connection_problem(line[2:].split())
            if problem is not None:
                return problem
        elif line.startswith("a=rtcp:"):
            fields = line[len("a=rtcp:"):].split()
            if len(fields) not in (1, 4) or not fields[0].isdigit():
                return "bad rtcp attribute"
            if len(fields) == 4:
                problem = _connection_problem(fields[1:])
                if problem is not None:
                    return problem
        elif line.startswith("m="):
            fields = line[2:].split()
            if len(fields) < 4:
                return "bad media line"
            if not fields[1].split("/", 1)[0].isdigit() or int(fields[1].split("/")[0]) > 65535:
                return "bad media port"
            audio = audio or fields[0] == "audio"
        elif line.startswith("o="):
            fields = line[2:].split()
            if len(fields) == 6 and len(fields[5]) > _MAX_HOST:
                return "origin address too long"
    if not audio:
        return "no audio stream"
    return None


def _connection_problem(fields: list[str]) -> str | None:
    """``IN IP4 <IPv4 literal>`` or ``IN IP6 <IPv6 literal>`` (an optional /ttl or /count
    after it), or why not: a family that does not match its address trips a PJSIP assertion."""
    if len(fields) != 3 or fields[0] != "IN" or fields[1] not in ("IP4", "IP6"):
        return "bad connection line"
    host = fields[2].split("/", 1)[0]
    if len(host) > _MAX_HOST:
        return "connection address too long"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "connection address is not an IP address"
    if address.version != (4 if fields[1] == "IP4" else 6):
        return "connection address does not match its family"
    return None


def check_offer(req: Request) -> Answer | None:
    """488 for an INVITE whose SDP PJSIP must not see."""
    ctype = (header_values(req.head, "content-type") + header_values(req.head, "c") or [""])[0]
    if not req.body.strip():
        return None  # no offer: we make one in the 200 OK
    if "application/sdp" not in ctype.lower():
        return Answer(415, "Unsupported Media Type", (("Accept", "application/sdp"),))
    problem = sdp_problem(req.body)
    if problem is not None:
        return Answer(488, f"Not Acceptable Here ({problem})")
    accepts = header_values(req.head, "accept")
    if accepts and not any("application/sdp" in a.lower() or "*/*" in a for a in accepts):
        return Answer(406, "Not Acceptable")
    return None


@dataclass
class _Record:
    refusals: list[float] = field(default_factory=list)
    ignored_until: float = 0.0


class Throttle:
    """Per-source refusal counting: a source refused ``limit`` times within ``window_s`` is
    ignored (its out-of-dialog requests dropped unanswered) for ``ignore_s``.

    Bounded in memory: at most ``max_sources`` sources are remembered, oldest first out, so a
    scan from many addresses cannot grow it without limit.
    """

    def __init__(self, limit: int, window_s: float, ignore_s: float,
                 max_sources: int = 4096) -> None:
        if limit < 1 or window_s <= 0 or ignore_s < 0:
            raise ValueError("throttle: limit >= 1, window_s > 0, ignore_s >= 0")
        self.limit, self.window_s, self.ignore_s = limit, window_s, ignore_s
        self.max_sources = max_sources
        self._sources: OrderedDict[str, _Record] = OrderedDict()

    def ignored(self, source: str, now: float | None = None) -> bool:
        record = self._sources.get(source)
        return record is not None and record.ignored_until > (now or time.monotonic())

    def refused(self, source: str, now: float | None = None) -> bool:
        """Count a refusal; True when the source has just crossed into being ignored."""
        now = now or time.monotonic()
        record = self._sources.pop(source, None) or _Record()
        self._sources[source] = record
        while len(self._sources) > self.max_sources:
            self._sources.popitem(last=False)
        record.refusals = [t for t in record.refusals if now - t < self.window_s] + [now]
        if len(record.refusals) >= self.limit and record.ignored_until <= now:
            record.ignored_until = now + self.ignore_s
            record.refusals.clear()
            return True
        return False
