"""Write a recording as a pcap of G.711 mu-law RTP packets, for sipp's ``play_pcap_audio``.

sipp replays the packets' payloads with their original spacing to the media address of the call,
so the file only needs well-formed Ethernet/IPv4/UDP/RTP framing and 20 ms timestamps.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from voice.audio import mulaw_encode, read_audio, resample

RATE = 8000
SAMPLES = 160  # 20 ms


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def write_rtp_pcap(recording: Path | str, out: Path | str, *, payload_type: int = 0,
                   ssrc: int = 0x1234ABCD) -> float:
    """Encode ``recording`` as 8 kHz mu-law RTP in a pcap; returns its duration in seconds."""
    chunk = read_audio(recording)
    audio = resample(chunk.samples, chunk.sample_rate, RATE).astype(np.int16)
    audio = np.pad(audio, (0, (-len(audio)) % SAMPLES))
    packets = []
    for i in range(len(audio) // SAMPLES):
        payload = mulaw_encode(audio[i * SAMPLES:(i + 1) * SAMPLES])
        rtp = struct.pack("!BBHII", 0x80, payload_type | (0x80 if i == 0 else 0), i & 0xFFFF,
                          (i * SAMPLES) & 0xFFFFFFFF, ssrc) + payload
        udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
        ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
        frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
        seconds, micros = divmod(i * 20000, 1_000_000)
        packets.append(struct.pack("<IIII", seconds, micros, len(frame), len(frame)) + frame)
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    Path(out).write_bytes(header + b"".join(packets))
    return len(audio) / RATE
