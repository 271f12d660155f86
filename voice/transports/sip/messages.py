"""Pure functions over SIP text: header values, numbers, source addresses.

PJSIP parses SIP for the stack; these read what the IVR needs from a request PJSIP already
accepted (the raw text it hands us as ``SipRxData.wholeMsg``), so they are tested with literal
messages and no network.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

# RFC 3261 compact forms of the headers we read.
_COMPACT = {"f": "from", "t": "to", "i": "call-id", "m": "contact"}


def header_values(message: str, name: str) -> list[str]:
    """Every value of header ``name`` (case-insensitive, compact forms understood)."""
    wanted = name.lower()
    head = re.split(r"\r?\n\r?\n", message, maxsplit=1)[0]
    values: list[str] = []
    matching = False  # the header line a folded continuation belongs to is ours
    # Only CRLF or LF end a SIP line: str.splitlines would also split on U+2028 and friends,
    # letting a display name smuggle in a header of its own.
    for line in re.split(r"\r?\n", head)[1:]:  # skip the request line
        if line[:1] in (" ", "\t"):
            if matching:
                values[-1] += " " + line.strip()
            continue
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        matching = bool(sep) and _COMPACT.get(key, key) == wanted
        if matching:
            values.append(value.strip())
    return values


def header(message: str, name: str) -> str | None:
    values = header_values(message, name)
    return values[0] if values else None


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_URI = re.compile(r"<?\s*(?:sips?|tel):([^@;>\s]+)", re.IGNORECASE)


def uri_user(value: str | None) -> str | None:
    """The user part of the first URI in a name-addr (``"Alex" <sip:+1555@host>`` -> +1555)."""
    if not value:
        return None
    value = _QUOTED.sub('""', value)  # a display name may hold anything, a URI included
    match = _URI.search(value)
    if not match:
        return None
    user = match.group(1)
    return user or None


def display_name(value: str | None) -> str | None:
    if not value:
        return None
    match = re.match(r'\s*"([^"]*)"\s*<', value) or re.match(r"\s*([^<\"]+?)\s*<", value)
    return match.group(1).strip() or None if match else None


def source_host(address: str) -> str:
    """``1.2.3.4:5060`` / ``[::1]:5060`` / ``::1`` -> the host part."""
    address = address.strip()
    if address.startswith("["):
        return address[1:address.index("]")]
    if address.count(":") == 1:
        return address.split(":")[0]
    return address


def address_allowed(host: str, networks: list[str]) -> bool:
    """Whether ``host`` lies in one of ``networks`` (CIDR strings)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


@dataclass(frozen=True)
class InviteInfo:
    """What the IVR takes from an inbound INVITE for the call context."""

    sip_call_id: str
    caller_number: str | None
    caller_name: str | None
    called_number: str | None
    source: str
    x_headers: dict[str, str] = field(default_factory=dict)


def parse_invite(message: str, source: str, x_headers: list[str]) -> InviteInfo:
    """The calling number comes from P-Asserted-Identity when the trunk asserts one (the network
    vouches for it), otherwise from From; the called number from To (or the request URI)."""
    asserted = header(message, "P-Asserted-Identity")
    sender = header(message, "From")
    request_line = message.split("\n", 1)[0]
    called = uri_user(header(message, "To")) or uri_user(request_line)
    wanted = {h.lower(): h for h in x_headers}
    copied = {}
    for name_lower, name in wanted.items():
        value = header(message, name_lower)
        if value is not None:
            copied[name] = value[:256]
    return InviteInfo(sip_call_id=header(message, "Call-ID") or "",
                      caller_number=uri_user(asserted) or uri_user(sender),
                      caller_name=display_name(asserted) or display_name(sender),
                      called_number=called, source=source, x_headers=copied)
