"""Audio edges: G.711 mu-law against the standard's reference, resampling, reading files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from voice.audio import (
    AudioChunk,
    StreamResampler,
    mulaw_decode,
    mulaw_encode,
    read_audio,
    resample,
    telephone_channel,
    write_wav,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the stdlib's G.711 (deprecated, still in 3.11): our reference


def test_mulaw_matches_the_stdlib_reference_for_every_sample_value():
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    assert mulaw_encode(pcm) == audioop.lin2ulaw(pcm.tobytes(), 2)
    every_byte = bytes(range(256))
    reference = np.frombuffer(audioop.ulaw2lin(every_byte, 2), dtype=np.int16)
    assert np.array_equal(mulaw_decode(every_byte), reference)


def test_stream_resampler_keeps_a_tone_and_its_timing():
    rate_in, rate_out = 8000, 16000
    t = np.arange(rate_in) / rate_in
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    stream = StreamResampler(rate_in, rate_out)
    out = np.concatenate([stream.process(tone[i:i + 160]) for i in range(0, len(tone), 160)]
                         + [stream.process(np.zeros(0, np.int16), last=True)])
    assert abs(len(out) - 2 * len(tone)) <= 32
    window = out[1000:15000]
    peak_hz = np.argmax(np.abs(np.fft.rfft(window))) * rate_out / len(window)
    assert abs(peak_hz - 440) < 2


def test_identity_resampler_passes_frames_through_without_a_copy():
    frame = np.ones(320, dtype=np.int16)
    assert StreamResampler(16000, 16000).process(frame) is frame


def test_read_audio_handles_stereo_8_bit_and_flac(tmp_path):
    stereo = np.stack([np.full(800, 1000, np.int16), np.full(800, 3000, np.int16)], axis=1)
    write_wav(tmp_path / "stereo.wav", stereo, 8000)
    chunk = read_audio(tmp_path / "stereo.wav")
    assert chunk.sample_rate == 8000 and np.all(chunk.samples == 2000)

    import wave
    with wave.open(str(tmp_path / "u8.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(1), w.setframerate(11025)
        w.writeframes(bytes([128 + 64] * 1000))
    chunk = read_audio(tmp_path / "u8.wav")
    assert chunk.sample_rate == 11025 and np.all(chunk.samples == 64 << 8)

    flac = read_audio(__import__("pathlib").Path(__file__).parent / "fixtures/speech/jfk.flac")
    assert flac.sample_rate == 16000 and 10.5 < flac.duration_s < 11.5


def test_telephone_channel_is_8khz_and_close_to_the_source():
    t = np.arange(16000) / 16000
    tone = AudioChunk((6000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16), 16000)
    phone = telephone_channel(tone)
    assert phone.sample_rate == 8000 and len(phone.samples) == 8000
    reference = resample(tone.samples, 16000, 8000).astype(float)
    error = phone.samples.astype(float) - reference
    snr_db = 10 * np.log10(np.mean(reference**2) / np.mean(error**2))
    assert snr_db > 30  # G.711 gives about 38 dB on a loud tone


def test_audio_chunk_refuses_anything_but_mono_int16():
    with pytest.raises(ValueError):
        AudioChunk(np.zeros(10, dtype=np.float32), 8000)
