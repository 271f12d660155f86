"""The seeded SIP fuzzer as `make test` runs it: a short budget of the campaign that
``python -m bench.sip_fuzz`` runs at length (the mutations live in bench/sipkit.py, which both
use; bench never imports from tests).

Mutations of a valid INVITE with a PCMU offer: bit flips, inserted and deleted bytes, headers
duplicated, dropped and swapped, Content-Length and CSeq values, invalid UTF-8 and control bytes
in the display name, Call-ID and URIs, long tokens, SDP ``c=`` hosts (up to 1,000 characters),
added, dropped and truncated SDP lines, folding, bare LF. Half of the new INVITEs come from an
allowed source and half from a refused one; one in ten is a re-INVITE inside a call held open
for them. Any mutation that would name a host off this machine is drawn again (the guard).
"""

from __future__ import annotations

from bench.sipkit import FuzzStats, fuzz

TEST_SEED = 4475
TEST_COUNT = 2000
TEST_RATE = 100.0  # messages per second: the 2,000 take about 20 s
ALLOWED_HOST = "127.0.0.4"
REFUSED_HOST = "127.0.0.5"


def run_test_fuzz(target: tuple[str, int], *, alive=lambda: True, count: int = TEST_COUNT,
                  seed: int = TEST_SEED, rate: float = TEST_RATE) -> FuzzStats:
    return fuzz(target, count=count, seed=seed, rate=rate, allowed_host=ALLOWED_HOST,
                refused_host=REFUSED_HOST, reinvite_share=0.1, alive=alive)
