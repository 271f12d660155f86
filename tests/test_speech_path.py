"""ASR, TTS and VAD on real recordings, through the telephone channel (8 kHz, mu-law)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import CALLS, FIXTURES

from voice.app.settings import VadSettings
from voice.asr import FULL_WINDOW_S, window_frames
from voice.audio import AudioChunk, read_audio, resample, telephone_channel
from voice.vad import SpeechDetector


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = words(reference), words(hypothesis)
    d = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        prev, d[0] = d.copy(), i
        for j, h in enumerate(hyp, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r != h))
    return d[len(hyp)] / max(1, len(ref))


def phone_16k(chunk: AudioChunk) -> np.ndarray:
    """What ASR receives from a phone call: 8 kHz mu-law, back up to 16 kHz."""
    return resample(telephone_channel(chunk).samples, 8000, 16000)


def test_jfk_over_the_phone(engines):
    speech = phone_16k(read_audio(FIXTURES / "speech" / "jfk.flac"))
    transcript = engines.transcriber.transcribe(speech, 16000)
    reference = ("And so my fellow Americans, ask not what your country can do for you, "
                 "ask what you can do for your country.")
    assert word_error_rate(reference, transcript.text) <= 0.1, transcript.text
    assert transcript.dropped is None


@pytest.mark.parametrize("call", ["two_turns_8k", "bench_ljspeech_8k"])
def test_recorded_sentences_over_the_phone(engines, calls_manifest, call):
    audio = read_audio(CALLS / f"{call}.wav")
    for utterance in calls_manifest[call]["utterances"]:
        start, end = int((utterance["start_s"] - 0.2) * 8000), int((utterance["end_s"] + 0.1) * 8000)
        speech = resample(audio.samples[max(0, start):end], 8000, 16000)
        text = engines.transcriber.transcribe(speech, 16000).text
        assert word_error_rate(utterance["text"], text) <= 0.25, (utterance["text"], text)


def test_digits_read_with_pauses(engines, calls_manifest):
    audio = read_audio(CALLS / "digits_8k.wav")
    utterance = calls_manifest["digits_8k"]["utterances"][0]
    start, end = int((utterance["start_s"] - 0.2) * 8000), int((utterance["end_s"] + 0.1) * 8000)
    text = engines.transcriber.transcribe(resample(audio.samples[start:end], 8000, 16000), 16000).text
    digits = "".join(re.findall(r"\d", text)) or text
    assert digits == "4567", text


def test_the_asr_window_fits_the_utterance_and_never_exceeds_whisper():
    assert window_frames(1.5) == 1000  # 10 s minimum
    assert window_frames(9.5) == 1500
    assert window_frames(45.0) == int(FULL_WINDOW_S * 100)


def test_asr_refuses_the_wrong_rate(engines):
    with pytest.raises(ValueError, match="16000"):
        engines.transcriber.transcribe(np.zeros(8000, np.int16), 8000)


def test_tts_speaks_what_it_was_given(engines):
    sentence = "Your order will arrive on Tuesday afternoon."
    pcm = np.frombuffer(engines._synthesize(sentence, 16000), dtype=np.int16)
    assert 1.5 < len(pcm) / 16000 < 5
    text = engines.transcriber.transcribe(pcm, 16000).text
    assert word_error_rate(sentence, text) <= 0.15, text


def test_tts_at_telephone_rate_is_still_intelligible(engines):
    sentence = "Please hold while I check your account."
    pcm8 = np.frombuffer(engines._synthesize(sentence, 8000), dtype=np.int16)
    phone = telephone_channel(AudioChunk(pcm8, 8000))
    text = engines.transcriber.transcribe(resample(phone.samples, 8000, 16000), 16000).text
    assert word_error_rate(sentence, text) <= 0.15, text


def _speech_fraction(detector: SpeechDetector, audio16: np.ndarray) -> float:
    frames = [audio16[i:i + 320] for i in range(0, len(audio16) - 319, 320)]
    return float(np.mean([detector.is_speech(f, 16000) for f in frames]))


def test_vad_hears_speech_and_not_silence_or_noise(engines):
    speech = phone_16k(read_audio(FIXTURES / "speech" / "jfk.flac"))
    detector = SpeechDetector(VadSettings(), engines.silero_session)
    assert _speech_fraction(detector, speech) > 0.6
    assert _speech_fraction(detector, np.zeros(16000 * 3, np.int16)) == 0.0
    noise = (np.random.default_rng(1).normal(0, 2000, 16000 * 3)).astype(np.int16)
    assert _speech_fraction(detector, noise) < 0.05


def test_vad_refuses_8khz_frames(engines):
    detector = SpeechDetector(VadSettings(), engines.silero_session)
    with pytest.raises(ValueError, match="16000"):
        detector.is_speech(np.zeros(160, np.int16), 8000)
