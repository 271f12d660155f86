"""ASR with the encoder window sized to the utterance vs faster-whisper's 30 s window.

    .venv/bin/python -m bench.asr_window

Every utterance of the fixture calls (real speakers, 8 kHz G.711, back to 16 kHz) is transcribed
both ways with the same model; the report gives word error rate against the reference text and
the time per utterance. Writes bench/results/asr_window.md.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent

import numpy as np

from voice.audio import int16_to_float, read_audio, resample

CALLS = ROOT / "tests" / "fixtures" / "calls"
RESULTS = ROOT / "bench" / "results"
NUMBERS = {"ten": "10", "four": "4", "seven": "7", "five": "5", "eight": "8", "mister": "mr",
           "fifteenth": "15th"}


def normalize(text: str) -> list[str]:
    words = re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()
    return [NUMBERS.get(w, w) for w in words]


def errors(reference: str, hypothesis: str) -> tuple[int, int]:
    ref, hyp = normalize(reference), normalize(hypothesis)
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d = d, [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r != h))
    return d[-1], len(ref)


def main() -> None:
    from models.registry import shared_registry
    from voice.app.settings import AsrSettings
    from voice.asr import WhisperTranscriber

    model = shared_registry().whisper("tiny.en")
    ours = WhisperTranscriber(model, AsrSettings())
    manifest = json.loads((CALLS / "calls.json").read_text())
    rows, totals = [], {"ours": [0, 0, []], "full": [0, 0, []]}
    for call, info in manifest.items():
        audio = read_audio(CALLS / info["file"])
        for utterance in info["utterances"]:
            if not utterance["text"] or call.startswith("order"):
                continue
            a = int(max(0, utterance["start_s"] - 0.2) * 8000)
            b = int((utterance["end_s"] + 0.12) * 8000)
            speech = resample(audio.samples[a:b], 8000, 16000)
            ours.transcribe(speech, 16000)  # warm
            started = time.perf_counter()
            mine = ours.transcribe(speech, 16000).text
            t_ours = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            segments, _ = model.transcribe(int16_to_float(speech), language="en", beam_size=1,
                                           without_timestamps=True, vad_filter=False,
                                           condition_on_previous_text=False)
            full = " ".join(s.text.strip() for s in segments)
            t_full = (time.perf_counter() - started) * 1000
            for name, text, ms in (("ours", mine, t_ours), ("full", full, t_full)):
                e, n = errors(utterance["text"], text)
                totals[name][0] += e
                totals[name][1] += n
                totals[name][2].append(ms)
            rows.append((len(speech) / 16000, t_ours, t_full, mine, full))
    RESULTS.mkdir(parents=True, exist_ok=True)
    wer = {k: v[0] / v[1] for k, v in totals.items()}
    p50 = {k: statistics.median(v[2]) for k, v in totals.items()}
    lines = ["# Whisper tiny.en: encoder window sized to the turn vs the 30 s window", "",
             f"Machine: {os.uname().nodename}, {os.cpu_count()} cores, CPU int8. "
             "Reproduce: `.venv/bin/python -m bench.asr_window`", "",
             f"{len(rows)} utterances (real speakers, 8 kHz G.711 back to 16 kHz), greedy "
             "decoding.",
             "", "| | WER | median ms | p95 ms |", "|---|---:|---:|---:|",
             f"| sized window (ours) | {wer['ours']:.3f} | {p50['ours']:.0f} | "
             f"{np.percentile(totals['ours'][2], 95):.0f} |",
             f"| 30 s window (faster-whisper transcribe) | {wer['full']:.3f} | {p50['full']:.0f} | "
             f"{np.percentile(totals['full'][2], 95):.0f} |", "",
             f"Speed-up of the median: {p50['full'] / p50['ours']:.1f}x.", "",
             "| seconds | ours ms | 30 s ms | ours | 30 s window |", "|---:|---:|---:|---|---|"]
    lines += [f"| {s:.1f} | {a:.0f} | {b:.0f} | {m} | {f} |" for s, a, b, m, f in rows]
    (RESULTS / "asr_window.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:12]))


if __name__ == "__main__":
    main()
