"""A PJSIP module, registered through ctypes, that screens requests before pjsua sees them.

Why not pjsua2's own hooks: pjsua2 hands an incoming INVITE to Python only after pjsua has taken
a call slot, built a dialog and opened the call's RTP and RTCP sockets. Refusing there is what
aborted the wheel's PJSIP (an INVITE without SDP refused inside ``onIncomingCall`` frees the
cloned request twice; a burst of refusals exhausts the 64-handle ``select()`` I/O queue with
sockets waiting out their close delay). pjsua2 offers no earlier hook and the wheel cannot be
rebuilt here, but its shared object exports PJSIP's C API, so this module is registered the way
any PJSIP application registers one: ``pjsip_endpt_register_module`` with an ``on_rx_request``
at a priority after the transaction layer and before the dialog layer. It sees each new request
once (retransmissions of accepted INVITEs are absorbed by the transaction layer before it),
answers refusals with ``pjsip_endpt_respond_stateless`` (no transaction, no dialog, no media) or
drops them, and lets everything else through untouched.

The ``pjsip_rx_data`` and ``pjsip_transport`` layouts below are PJSIP 2.15's; ``Screen.start``
checks them against the first request it reads (source port, message bounds) and turns the
module off with an error in the log if they do not match, leaving the slower in-call refusal.

Runs on the endpoint thread only (the thread that pumps ``libHandleEvents``).
"""

from __future__ import annotations

import ctypes
import ipaddress
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import pjsua2 as pj
from loguru import logger

from voice.transports.sip.screen import Answer

_PJ_TRUE, _PJ_FALSE = 1, 0
_PJSIP_MAX_PKT_LEN = 4000
_PJ_INET6_ADDRSTRLEN = 46
_PRIORITY = 24  # after the transaction layer (16), before the dialog/UA layer (32)


class _PjStr(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_char_p), ("slen", ctypes.c_ssize_t)]


class _OpKey(ctypes.Structure):  # pj_ioqueue_op_key_t + pjsip_rx_data_op_key
    _fields_ = [("internal", ctypes.c_void_p * 32), ("activesock_data", ctypes.c_void_p),
                ("user_data", ctypes.c_void_p), ("rdata", ctypes.c_void_p)]


class _SockAddr(ctypes.Structure):  # pj_sockaddr: union of sockaddr_in / sockaddr_in6
    _fields_ = [("family", ctypes.c_uint16), ("port", ctypes.c_uint16),
                ("data", ctypes.c_uint32 * 6)]


class _RxData(ctypes.Structure):
    """The head of ``pjsip_rx_data`` up to the fields read here (PJSIP 2.15)."""

    _fields_ = [("pool", ctypes.c_void_p), ("transport", ctypes.c_void_p),
                ("tp_data", ctypes.c_void_p), ("op_key", _OpKey),
                ("ts_sec", ctypes.c_long), ("ts_msec", ctypes.c_long),
                ("packet", ctypes.c_char * _PJSIP_MAX_PKT_LEN), ("zero", ctypes.c_uint32),
                ("len", ctypes.c_ssize_t), ("src_addr", _SockAddr),
                ("src_addr_len", ctypes.c_int), ("src_name", ctypes.c_char * _PJ_INET6_ADDRSTRLEN),
                ("src_port", ctypes.c_int),
                ("msg_buf", ctypes.c_void_p), ("msg_len", ctypes.c_int)]


class _Transport(ctypes.Structure):
    """The head of ``pjsip_transport`` up to its key (PJSIP 2.15)."""

    _fields_ = [("obj_name", ctypes.c_char * 32), ("pool", ctypes.c_void_p),
                ("ref_cnt", ctypes.c_void_p), ("lock", ctypes.c_void_p),
                ("grp_lock", ctypes.c_void_p), ("tracing", ctypes.c_int),
                ("is_shutdown", ctypes.c_int), ("is_destroying", ctypes.c_int),
                ("key_type", ctypes.c_long), ("rem_addr", _SockAddr)]


class _Hdr(ctypes.Structure):  # the list links at the head of every pjsip_hdr
    _fields_ = [("prev", ctypes.c_void_p), ("next", ctypes.c_void_p)]


_RX_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


class _Module(ctypes.Structure):
    _fields_ = [("prev", ctypes.c_void_p), ("next", ctypes.c_void_p), ("name", _PjStr),
                ("id", ctypes.c_int), ("priority", ctypes.c_int),
                ("load", ctypes.c_void_p), ("start", ctypes.c_void_p),
                ("stop", ctypes.c_void_p), ("unload", ctypes.c_void_p),
                ("on_rx_request", _RX_CALLBACK), ("on_rx_response", ctypes.c_void_p),
                ("on_tx_request", ctypes.c_void_p), ("on_tx_response", ctypes.c_void_p),
                ("on_tsx_state", ctypes.c_void_p)]


def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL(pj._pjsua2.__file__)
    lib.pjsua_get_pjsip_endpt.restype = ctypes.c_void_p
    lib.pjsip_endpt_register_module.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.pjsip_endpt_unregister_module.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.pjsip_endpt_respond_stateless.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                                                  ctypes.c_void_p, ctypes.c_void_p,
                                                  ctypes.c_void_p]
    lib.pjsip_transport_shutdown.argtypes = [ctypes.c_void_p]
    lib.pjsip_generic_string_hdr_create.restype = ctypes.c_void_p
    lib.pjsip_generic_string_hdr_create.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                                    ctypes.c_void_p]
    return lib


def _pj_str(value: bytes) -> _PjStr:
    return _PjStr(value, len(value))


def sockaddr_host(addr: _SockAddr) -> tuple[str, int]:
    """``(host, port)`` of a ``pj_sockaddr`` (AF_INET = 2, AF_INET6 = 10 on Linux)."""
    port = struct.unpack("!H", struct.pack("=H", addr.port))[0]
    raw = bytes(addr.data)
    if addr.family == 2:
        return str(ipaddress.IPv4Address(raw[:4])), port
    if addr.family == 10:
        return str(ipaddress.IPv6Address(raw[4:20])), port
    return "", port


@dataclass(frozen=True)
class Incoming:
    """One request as the screen's decision function sees it."""

    raw: bytes
    host: str
    port: int
    transport: int  # the pjsip_transport pointer: which connection it came on


Decide = Callable[[Incoming], Answer | None]


class RequestGuard:
    """Registers the module and answers for ``decide``: ``None`` lets the request through."""

    def __init__(self, decide: Decide) -> None:
        self.decide = decide
        self.enabled = False
        self.last_seen: dict[int, float] = {}  # transport pointer -> last request time
        self._lib: ctypes.CDLL | None = None
        self._endpt: int | None = None
        self._callback = _RX_CALLBACK(self._on_rx_request)  # kept: PJSIP holds the pointer
        self._name = b"mod-ivr-guard"
        self._module = _Module()
        self._checked = False

    def start(self) -> None:
        """Register with PJSIP (after ``libInit``, on the endpoint thread)."""
        self._lib = _library()
        self._endpt = self._lib.pjsua_get_pjsip_endpt()
        module = self._module
        module.name = _pj_str(self._name)
        module.id = -1
        module.priority = _PRIORITY
        module.on_rx_request = self._callback
        status = self._lib.pjsip_endpt_register_module(self._endpt, ctypes.byref(module))
        if status != 0:
            raise RuntimeError(f"cannot register the SIP request guard (PJSIP status {status})")
        self.enabled = True

    def stop(self) -> None:
        """Unregister (before ``libDestroy``)."""
        if self._lib is not None and self._endpt and self.enabled:
            self._lib.pjsip_endpt_unregister_module(self._endpt, ctypes.byref(self._module))
        self.enabled = False

    def shutdown_transport(self, pointer: int) -> None:
        """Close a connection (``pjsip_transport_shutdown``), on the endpoint thread."""
        if self._lib is not None:
            self._lib.pjsip_transport_shutdown(pointer)

    # -- PJSIP's receive path (endpoint thread) ----------------------------------------------------

    def _on_rx_request(self, rdata_ptr: int) -> int:
        try:
            return self._screen(rdata_ptr)
        except Exception as error:  # noqa: BLE001 - never let a bug here end the process
            logger.error(f"sip guard: {type(error).__name__}: {error}; request passed on")
            return _PJ_FALSE

    def _screen(self, rdata_ptr: int) -> int:
        if not self.enabled:
            return _PJ_FALSE
        rdata = _RxData.from_address(rdata_ptr)
        if not self._checked and not self._layout_ok(rdata, rdata_ptr):
            return _PJ_FALSE
        raw = ctypes.string_at(rdata.msg_buf, rdata.msg_len)
        host, port = sockaddr_host(rdata.src_addr)
        self.last_seen[rdata.transport or 0] = time.monotonic()
        answer = self.decide(Incoming(raw, host, port, rdata.transport or 0))
        if answer is None:
            return _PJ_FALSE
        if answer.code:  # 0 (DROP): consumed unanswered
            self._respond(rdata, rdata_ptr, answer)
        return _PJ_TRUE

    def _layout_ok(self, rdata: _RxData, rdata_ptr: int) -> bool:
        """Check the struct layout on the first request; turn the guard off if it is wrong."""
        packet_start = rdata_ptr + _RxData.packet.offset
        name = rdata.src_name.decode("ascii", "replace")
        host, port = sockaddr_host(rdata.src_addr)
        ok = (0 < rdata.src_port < 65536 and port == rdata.src_port and name == host
              and 0 < rdata.msg_len <= _PJSIP_MAX_PKT_LEN
              and packet_start <= (rdata.msg_buf or 0) < packet_start + _PJSIP_MAX_PKT_LEN)
        if not ok:
            self.enabled = False
            logger.error("sip guard: this PJSIP build's pjsip_rx_data layout is not the one the "
                         "guard knows (PJSIP 2.15); requests are screened after pjsua instead, "
                         "which survives less load")
            return False
        self._checked = True
        return True

    def _respond(self, rdata: _RxData, rdata_ptr: int, answer: Answer) -> None:
        lib = self._lib
        keep = []  # buffers PJSIP reads during the call
        head = None
        for name, value in answer.headers:
            n, v = _pj_str(name.encode()), _pj_str(value.encode("utf-8", "replace"))
            keep += [n, v]
            hdr = lib.pjsip_generic_string_hdr_create(rdata.pool, ctypes.byref(n),
                                                      ctypes.byref(v))
            if head is None:
                head = lib.pjsip_generic_string_hdr_create(rdata.pool, ctypes.byref(n),
                                                           ctypes.byref(v))
                _link(head, head)
            _insert_before(head, hdr)
        reason = _pj_str(answer.reason.encode("ascii", "replace"))
        lib.pjsip_endpt_respond_stateless(self._endpt, rdata_ptr, answer.code,
                                          ctypes.byref(reason), head, None)


def _link(a: int, b: int) -> None:
    _Hdr.from_address(a).next = b
    _Hdr.from_address(b).prev = a


def _insert_before(head: int, hdr: int) -> None:
    """``pj_list_insert_before(head, hdr)``: append ``hdr`` to the list ``head`` starts."""
    last = _Hdr.from_address(head).prev
    _link(last, hdr)
    _link(hdr, head)


def transport_remote(pointer: int) -> str:
    """The remote host of a connection-oriented ``pjsip_transport``."""
    return sockaddr_host(_Transport.from_address(pointer).rem_addr)[0]
