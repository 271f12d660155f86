"""Whisper ASR for caller turns, sized to the utterance.

Whisper's encoder is trained on 30-second windows, and faster-whisper always pads to one: on this
CPU that fixed cost (about 240 ms for tiny.en) dominated a short turn. CTranslate2 accepts shorter
mel windows, so a turn is encoded in a window that fits it (at least ``MIN_WINDOW_S``), which cut
the encoder to about 45 ms for a 10 s window with the same transcripts on our recordings
(``bench/asr_window.py`` checks that). Decoding calls CTranslate2 directly with faster-whisper's
own tokenizer and feature extractor; faster-whisper's ``transcribe()`` cannot take a shorter
window.

A ``hint`` (the words the caller is likely to say: the menu's topics while the caller may say
anything) goes in as Whisper's previous-text prompt, as faster-whisper's ``initial_prompt``
does; Whisper continues in the words it is primed with, which is how a telephone IVR's
recognizer is given its grammar. A prompt also lowers Whisper's no-speech probability and raises
its confidence (primed, tiny.en wrote "Okay." for a 0.2 s noise burst it drops unprimed), so a
primed turn is dropped as no-speech whenever the same audio would be unprimed
(``unprimed_no_speech``: one decoder step, and a full unprimed decode only for audio that step
finds suspect).

Whisper invents text on silence, so callers of ``transcribe`` pass voiced audio only (the VAD
cuts it); segments Whisper itself scores as no-speech are still dropped here.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import ctranslate2
import numpy as np
from ctranslate2.models import WhisperGenerationResult
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer

from voice.app.settings import AsrSettings
from voice.audio import ASR_SAMPLE_RATE, int16_to_float

MAX_HINT_TOKENS = 100  # Whisper allows 223 prompt tokens; a hint is a few phrases
MIN_WINDOW_S = 10.0  # shorter windows made tiny.en repeat itself on 1-2 s turns
WINDOW_STEP_S = 5.0
FULL_WINDOW_S = 30.0
_HOP = 160  # mel frames are 10 ms at 16 kHz


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    no_speech_prob: float
    avg_logprob: float
    audio_s: float
    elapsed_ms: float
    dropped: str | None = None  # why the text was discarded, if it was

    @property
    def is_empty(self) -> bool:
        return not self.text


def is_primed(hint: str | None) -> bool:
    """Whether ``hint`` primes the decoder (a blank one does not)."""
    return bool(hint and hint.strip())


def max_length(prompt_tokens: int, audio_s: float) -> int:
    """CTranslate2 ``max_length`` for a turn of ``audio_s`` seconds: about 4 tokens a second of
    speech is generous; the cap stops a repetition loop early."""
    return min(448, prompt_tokens + int(12 + 8 * audio_s))


def window_frames(audio_s: float) -> int:
    """Mel frames of the encoder window for an utterance of ``audio_s`` seconds."""
    window_s = max(MIN_WINDOW_S, math.ceil((audio_s + 1.0) / WINDOW_STEP_S) * WINDOW_STEP_S)
    return int(min(window_s, FULL_WINDOW_S) * ASR_SAMPLE_RATE / _HOP)


class WhisperTranscriber:
    """Transcribes one voiced turn at a time per worker; safe to share between calls."""

    def __init__(self, model: WhisperModel, settings: AsrSettings) -> None:
        self.model = model
        self.settings = settings
        self._tokenizers: dict[str, Tokenizer] = {}
        self._lock = threading.Lock()

    def _tokenizer(self, language: str) -> Tokenizer:
        with self._lock:
            if language not in self._tokenizers:
                self._tokenizers[language] = Tokenizer(
                    self.model.hf_tokenizer, self.model.model.is_multilingual,
                    task="transcribe", language=language)
            return self._tokenizers[language]

    def transcribe(self, samples: np.ndarray, sample_rate: int, *, hint: str | None = None
                   ) -> Transcript:
        """Transcribe int16 speech at 16 kHz (asserted: the model is trained at that rate),
        primed with ``hint`` if given."""
        if sample_rate != ASR_SAMPLE_RATE:
            raise ValueError(f"ASR input must be {ASR_SAMPLE_RATE} Hz, got {sample_rate}")
        started = time.perf_counter()
        audio_s, window = self.encoder_window(samples)
        encoded = self.model.model.encode(ctranslate2.StorageView.from_array(window[None]),
                                          to_cpu=False)
        language = self.languages(encoded)[0]
        prompt = self.prompt(language, hint)
        result = self.model.model.generate(
            encoded, [prompt], max_length=max_length(len(prompt), audio_s),
            **self.generate_options())[0]
        no_speech = self.unprimed_no_speech(encoded, [language], [audio_s])[0] \
            if is_primed(hint) else None
        return self.transcript(result, language, audio_s, started, no_speech)

    # The steps of ``transcribe``, shared with the cross-call batch path
    # (voice/inference/batching.py) so that both apply the same window and rules.

    def encoder_window(self, samples: np.ndarray) -> tuple[float, np.ndarray]:
        """Seconds of audio and its log-mel window (n_mels x ``window_frames``) for int16 speech
        at 16 kHz; past 30 s the audio is cut (callers cut turns there)."""
        audio = int16_to_float(samples)
        audio_s = len(audio) / ASR_SAMPLE_RATE
        if len(audio) > FULL_WINDOW_S * ASR_SAMPLE_RATE:
            audio = audio[: int(FULL_WINDOW_S * ASR_SAMPLE_RATE)]  # callers cut turns at 30 s
        n_frames = window_frames(audio_s)
        features = self.model.feature_extractor(audio, chunk_length=None)[:, :n_frames]
        window = np.full((features.shape[0], n_frames), features.min(), dtype=np.float32)
        window[:, : features.shape[1]] = features
        return audio_s, window

    def languages(self, encoded: ctranslate2.StorageView) -> list[str]:
        """The decoding language of each encoded window: the configured one, else detected."""
        batch = encoded.shape[0]
        if self.settings.language is not None:
            return [self.settings.language] * batch
        if not self.model.model.is_multilingual:
            return ["en"] * batch
        return [r[0][0][2:-2] for r in self.model.model.detect_language(encoded)]

    def unprimed_no_speech(self, encoded: ctranslate2.StorageView, languages: list[str],
                           audio_s: list[float]) -> list[float | None]:
        """For a primed pass: each window's no-speech probability where, decoded without the
        prompt, it would be dropped as no-speech; None where it would not. One decoder step
        scores every window; only those it finds suspect (rare for speech) are decoded in full,
        because the drop rule also needs the unprimed text's confidence."""
        prompts = [self.prompt(language) for language in languages]
        probes = self.model.model.generate(
            encoded, prompts, max_length=max(len(p) for p in prompts) + 1, beam_size=1,
            return_no_speech_prob=True)
        threshold = self.settings.no_speech_threshold
        if all(probe.no_speech_prob <= threshold for probe in probes):
            return [None] * len(prompts)
        cap = max(max_length(len(p), seconds) for p, seconds in zip(prompts, audio_s, strict=True))
        results = self.model.model.generate(encoded, prompts, max_length=cap,
                                            **self.generate_options())
        return [result.no_speech_prob if self.is_no_speech(result, language) else None
                for result, language in zip(results, languages, strict=True)]

    def is_no_speech(self, result: WhisperGenerationResult, language: str) -> bool:
        """faster-whisper's rule: Whisper scores the window no-speech and the text it wrote is
        not confident either."""
        return result.no_speech_prob > self.settings.no_speech_threshold and \
            self.avg_logprob(result, language) < self.settings.log_prob_threshold

    def avg_logprob(self, result: WhisperGenerationResult, language: str) -> float:
        """Mean log-probability of the result's tokens and its end of text."""
        eot = self._tokenizer(language).eot
        return result.scores[0] / max(1, len([t for t in result.sequences_ids[0] if t < eot]) + 1)

    def prompt(self, language: str, hint: str | None = None) -> list[int]:
        """Decoder prompt: the hint as previous text (its last ``MAX_HINT_TOKENS``), then the
        start-of-transcript sequence without timestamps."""
        tokenizer = self._tokenizer(language)
        primed = []
        if is_primed(hint):
            primed = [tokenizer.sot_prev] + \
                tokenizer.encode(" " + hint.strip())[-MAX_HINT_TOKENS:]
        return primed + list(tokenizer.sot_sequence) + [tokenizer.no_timestamps]

    def generate_options(self) -> dict[str, Any]:
        """CTranslate2 ``generate`` options besides the prompt and ``max_length``."""
        return dict(beam_size=self.settings.beam_size, return_scores=True,
                    return_no_speech_prob=True, suppress_blank=True, no_repeat_ngram_size=0,
                    repetition_penalty=1.0)

    def transcript(self, result: WhisperGenerationResult, language: str, audio_s: float,
                   started: float, unprimed_no_speech: float | None = None) -> Transcript:
        """The transcript of one generation result, dropped if Whisper scores it no-speech, or
        if it was primed and ``unprimed_no_speech`` says the audio would be dropped unprimed."""
        tokenizer = self._tokenizer(language)
        text = tokenizer.decode([t for t in result.sequences_ids[0] if t < tokenizer.eot]).strip()
        no_speech_prob, dropped = result.no_speech_prob, None
        if unprimed_no_speech is not None:
            no_speech_prob = unprimed_no_speech
            dropped, text = f"no-speech unprimed ({no_speech_prob:.2f})", ""
        elif self.is_no_speech(result, language):
            dropped, text = f"no-speech ({no_speech_prob:.2f})", ""
        return Transcript(text=text, language=language, no_speech_prob=no_speech_prob,
                          avg_logprob=self.avg_logprob(result, language), audio_s=audio_s,
                          elapsed_ms=(time.perf_counter() - started) * 1000, dropped=dropped)
