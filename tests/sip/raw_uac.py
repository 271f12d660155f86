"""A SIP caller over a raw UDP socket, for requests no SIP stack would send: header bytes that are
not UTF-8, odd Call-IDs. It speaks just enough of RFC 3261 for one dialog (INVITE, ACK, BYE, and
answering the server's BYE); the media port in its SDP is a bound socket that discards RTP."""

from __future__ import annotations

import re
import socket
import time
import uuid


class RawUac:
    """One call from 127.0.0.1 to ``port``. Header values are bytes, sent as they are."""

    def __init__(self, port: int, *, call_id: bytes | None = None,
                 from_name: bytes = b"Alex Morgan", caller: bytes = b"+15550000001") -> None:
        self.server = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # RTP lands here, unread
        self.rtp.bind(("127.0.0.1", 0))
        self.local = self.sock.getsockname()[1]
        self.call_id = call_id or uuid.uuid4().hex.encode()
        self.from_tag = uuid.uuid4().hex[:8].encode()
        self.from_name = from_name
        self.caller = caller
        self.to_header: bytes | None = None  # with the server's tag, once answered
        self.contact: bytes = f"sip:+18005550100@127.0.0.1:{port}".encode()
        self.ended_by_server = False

    def _head(self, method: bytes, uri: bytes, cseq: int, to: bytes) -> bytes:
        branch = b"z9hG4bK" + uuid.uuid4().hex[:12].encode()
        return (method + b" " + uri + b" SIP/2.0\r\n"
                b"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport\r\n" % (self.local, branch) +
                b'From: "' + self.from_name + b'" <sip:' + self.caller +
                b"@127.0.0.1:%d>;tag=%s\r\n" % (self.local, self.from_tag) +
                b"To: " + to + b"\r\n"
                b"Call-ID: " + self.call_id + b"\r\n"
                b"CSeq: %d %s\r\n" % (cseq, method) +
                b"Contact: <sip:" + self.caller + b"@127.0.0.1:%d>\r\n" % self.local +
                b"Max-Forwards: 70\r\n")

    def invite(self, timeout_s: float = 20.0) -> int:
        """Send the INVITE (PCMU offer), ACK a final answer; returns its status code."""
        rtp_port = self.rtp.getsockname()[1]
        sdp = (b"v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               b"m=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
               b"a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n" % rtp_port)
        uri = b"sip:+18005550100@127.0.0.1:%d" % self.server[1]
        to = b"<" + uri + b">"
        message = (self._head(b"INVITE", uri, 1, to) +
                   b"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n" % len(sdp) +
                   sdp)
        self.sock.sendto(message, self.server)
        deadline = time.time() + timeout_s
        resent = time.time()
        while time.time() < deadline:
            self.sock.settimeout(0.5)
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                if time.time() - resent > 2:  # no provisional yet: retransmit, as UDP must
                    self.sock.sendto(message, self.server)
                    resent = time.time()
                continue
            status = re.match(rb"SIP/2.0 (\d{3})", data)
            if status is None or b" INVITE\r\n" not in _header(data, b"CSeq") + b"\r\n":
                continue
            code = int(status.group(1))
            if code < 200:
                resent = float("inf")
                continue
            self.to_header = _header(data, b"To")
            if code < 300:
                found = re.search(rb"<([^>]+)>", _header(data, b"Contact"))
                if found:
                    self.contact = found.group(1)
            ack_uri = self.contact if code < 300 else uri
            self.sock.sendto(self._head(b"ACK", ack_uri, 1, self.to_header) +
                             b"Content-Length: 0\r\n\r\n", self.server)
            return code
        raise TimeoutError("no final answer to the INVITE")

    def bye(self, timeout_s: float = 10.0) -> int:
        """End the call; returns the status of the BYE's answer."""
        message = self._head(b"BYE", self.contact, 2, self.to_header) + \
            b"Content-Length: 0\r\n\r\n"
        self.sock.sendto(message, self.server)
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            self.sock.settimeout(1.0)
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                self.sock.sendto(message, self.server)
                continue
            status = re.match(rb"SIP/2.0 (\d{3})", data)
            if status and b"BYE" in _header(data, b"CSeq"):
                return int(status.group(1))
            self._answer_request(data)
        raise TimeoutError("no answer to the BYE")

    def wait_bye(self, timeout_s: float) -> bool:
        """Answer what the server sends until it hangs up (BYE, answered 200) or the time is
        up; returns whether it hung up."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            self.sock.settimeout(max(0.05, min(1.0, deadline - time.time())))
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            if self._answer_request(data) == b"BYE":
                self.ended_by_server = True
                return True
        return False

    def _answer_request(self, data: bytes) -> bytes | None:
        """200 OK to a request from the server (BYE, OPTIONS, re-INVITE are not expected);
        returns its method."""
        method = data.split(b" ", 1)[0]
        if data.startswith(b"SIP/2.0") or method == b"ACK":
            return None
        head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
        keep = [h for h in head if h.split(b":", 1)[0].strip().lower()
                in (b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq")]
        self.sock.sendto(b"SIP/2.0 200 OK\r\n" + b"\r\n".join(keep) +
                         b"\r\nContent-Length: 0\r\n\r\n", self.server)
        return method

    def close(self) -> None:
        self.sock.close()
        self.rtp.close()


def _header(message: bytes, name: bytes) -> bytes:
    for line in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return b""
