"""Listen stage: caller audio -> VAD -> end-of-turn -> ASR -> confirmed caller turns; barge-in.

Reads top to bottom as the audio goes: each transport frame is resampled to 16 kHz, cut into VAD
frames, judged speech or not, and fed to the turn segmenter. At the early pause the turn's voiced
audio goes to ASR speculatively; the transcript sets how long to wait for confirmation; the
confirmed turn is pushed downstream. Caller speech while our reply plays stops the reply.

While the flow takes a card number by keypad (``ListenStage.asr_paused``), no audio goes to ASR:
the caller's speech still ends turns and can barge in, but it is never transcribed, so a card
read aloud cannot reach a transcript, a record or a log; keys arrive as DTMF frames.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from loguru import logger
from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    InterruptionFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from intents.dialogue.turns import CallerTurn, Expect
from intents.redaction import keypad_only, redact
from voice.asr import Transcript
from voice.audio import ASR_SAMPLE_RATE, StreamResampler
from voice.dtmf import DtmfDetector
from voice.endpointing import (
    TurnEvent,
    TurnEventKind,
    TurnSegmenter,
    TurnWait,
    implausible_gain,
    turn_wait,
)
from voice.pipeline.context import CallContext
from voice.pipeline.frames import CallerTurnFrame, ExpectFrame, ResumeReplyFrame, SayFrame
from voice.pipeline.records import TurnRecord, TurnTimes
from voice.smart_turn import shared_smart_turn
from voice.vad import SpeechDetector

# Also the confirmations a caller adds after a yes that already ended their turn ("Yes. That's
# right."): said over the reply to that yes, they must not cut it.
BACKCHANNELS = frozenset({"", "uh-huh", "uh huh", "mm-hmm", "mm hmm", "mhm", "hmm", "mm", "okay",
                          "ok", "yeah", "right", "uh", "um", "yes", "i see", "sure",
                          "that's right", "that is right", "correct", "that's correct",
                          "yep", "exactly", "great", "thanks", "thank you"})


_KEYPAD = frozenset(entry.value for entry in KeypadEntry)
# Said when the caller talks while a card number is being keyed (the words are not transcribed).
USE_THE_KEYPAD = "For your security, please key the card number on your keypad, not by voice."
_REMIND_AFTER_SPEECH_S = 0.6  # shorter sounds (a cough, "uh") get no reminder


@dataclass
class _Speculation:
    """The transcript taken at the early pause, and what end of turn made of it."""

    generation: int
    transcript: Transcript
    asr_start: float
    asr_end: float
    wait: TurnWait | None = None
    smart_turn_p: float | None = None
    smart_turn_ms: float | None = None


def is_backchannel(text: str) -> bool:
    """Words that acknowledge rather than interrupt ("uh-huh", "okay")."""
    return text.lower().strip(" .,!?") in BACKCHANNELS


class ListenStage(FrameProcessor):
    def __init__(self, session: CallContext) -> None:
        super().__init__(name="listen")
        self.session = session
        settings = session.settings
        self.expect = Expect.ANYTHING  # what the dialogue expects next (ExpectFrame)
        self.expect_length: int | None = None  # digits in the expected value, when known
        # ASR's prompt for an open question: the handler's (the menu's words), read once
        self._open_hint: str | None = getattr(session.handler, "speech_hint", None) \
            if settings.asr.speech_hints else None
        self.speech_hint = self._open_hint  # for the next turn (ExpectFrame)
        self.smart_turn = shared_smart_turn(settings.turn.smart_turn_model_path) \
            if settings.turn.smart_turn else None
        self.secret_slot: str | None = None  # the secret the flow is collecting by keypad
        self.vad_frame = ASR_SAMPLE_RATE * settings.audio.frame_ms // 1000
        self.frame_s = settings.audio.frame_ms / 1000
        self.detector = SpeechDetector(settings.vad, session.silero_session)
        self.segmenter = TurnSegmenter(settings.turn, self.frame_s)
        self.resampler = StreamResampler(session.transport_rate, ASR_SAMPLE_RATE)
        self._pending16 = np.zeros(0, dtype=np.int16)
        self.dtmf = DtmfDetector(session.transport_rate) if settings.audio.inband_dtmf else None
        self._preroll: deque[np.ndarray] = deque(
            maxlen=max(1, settings.turn.pre_speech_pad_ms // settings.audio.frame_ms))
        self._turn_audio: list[np.ndarray] = []
        self._turn_audio_start_s = 0.0
        self.stream_s = 0.0  # caller audio seen so far
        self._asr_task: asyncio.Task | None = None
        self._asr_generation = 0
        self._speculative: _Speculation | None = None
        self._heard_before: str | None = None  # the turn's previous speculative transcript
        self._speech_s_before = 0.0  # voiced seconds of the turn when it was taken
        self._value_suspect = False  # a transcript of this turn gained implausibly many digits
        self._barged = False
        self._turn_index = 0
        self._asr_overruns = 0
        self._key_at_s = -1.0  # stream time of the last keypad key (RFC 4733 or in-band)

    # -- frames -------------------------------------------------------------------------------

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self._on_audio(frame)
        elif isinstance(frame, EndFrame):
            await self._finish()
            await self.push_frame(frame, direction)
        elif isinstance(frame, InputDTMFFrame):
            self._key_at_s = self.stream_s
            await self.push_frame(frame, direction)
        elif isinstance(frame, ExpectFrame):  # from respond, upstream: ours, not passed on
            self.expect, self.secret_slot = frame.expect, frame.secret_slot
            self.expect_length = frame.expect_length
            # An expected value gets no prompt: primed with spelled digits, tiny.en wrote a
            # long digit string for a real caller's six, and primed with "yes, no" it still
            # heard "yes, that's right" as "not right" (the shipped cohort,
            # bench/results/eval_gate.md).
            self.speech_hint = self._open_hint if frame.expect == Expect.ANYTHING else None
        else:
            await self.push_frame(frame, direction)

    @property
    def asr_paused(self) -> bool:
        """Caller speech is not transcribed: the flow is taking a secret by keypad (RFC 4733
        or in-band DTMF), so the secret can never reach a transcript, a record or a log."""
        return keypad_only(self.secret_slot)

    async def _on_audio(self, frame: InputAudioRawFrame) -> None:
        if frame.sample_rate != self.session.transport_rate:
            raise ValueError(f"transport frame at {frame.sample_rate} Hz, call set up at "
                             f"{self.session.transport_rate} Hz")
        samples = np.frombuffer(frame.audio, dtype=np.int16)
        if self.dtmf is not None:
            key = self.dtmf.push(samples)
            if key is not None and key in _KEYPAD:  # pipecat has no A-D keys
                # Not the key itself: callers key card numbers and PINs.
                logger.debug(f"{self.session.call_id}: in-band DTMF key detected")
                self._key_at_s = self.stream_s
                await self.push_frame(InputDTMFFrame(button=KeypadEntry(key)))
        wide = self.resampler.process(samples)
        if len(self._pending16):
            wide = np.concatenate([self._pending16, wide])
        n_whole = len(wide) // self.vad_frame * self.vad_frame
        self._pending16 = wide[n_whole:]
        for start in range(0, n_whole, self.vad_frame):
            await self._on_vad_frame(wide[start: start + self.vad_frame])
        self.session.on_caller_frame_processed()

    async def _on_vad_frame(self, frame16: np.ndarray) -> None:
        self.stream_s += self.frame_s
        speech = self.detector.is_speech(frame16, ASR_SAMPLE_RATE)
        seg = self.segmenter
        if self._turn_audio or speech:
            if not self._turn_audio:
                self._turn_audio = list(self._preroll)
                self._turn_audio_start_s = self.stream_s - self.frame_s * (len(self._preroll) + 1)
            self._turn_audio.append(frame16)
        else:
            self._preroll.append(frame16)
        events = seg.push(self.stream_s, speech)
        if not seg.in_turn and seg.speech_s == 0 and self._turn_audio and not events:
            self._drop_turn_audio()  # a blip, not a turn
        for event in events:
            await self._on_turn_event(event)
        if seg.in_turn and speech and not self._barged:
            await self._maybe_barge_in()

    # -- turn events -----------------------------------------------------------------------------

    async def _on_turn_event(self, event: TurnEvent) -> None:
        logger.debug(f"{self.session.call_id}: {event.kind} at {event.at_s:.2f}s")
        if event.kind == TurnEventKind.SPEECH_STARTED:
            self._speculative = None
            self.session.speculation.new_turn()
            self._heard_before, self._speech_s_before = None, 0.0
            self._value_suspect = False
        elif event.kind == TurnEventKind.EARLY_PAUSE:
            self._start_asr(event)
        elif event.kind == TurnEventKind.SPEECH_RESUMED:
            self._asr_generation += 1  # the running transcript is for a turn that went on
            self._speculative = None
            self.session.speculation.discard()  # its reply is never played
        elif event.kind == TurnEventKind.TURN_ENDED:
            await self._end_turn(event)

    def _voiced_audio(self, speech_end_s: float) -> np.ndarray:
        """The turn's audio from pre-roll to the last speech frame plus the trailing pad."""
        audio = np.concatenate(self._turn_audio) if self._turn_audio else np.zeros(0, np.int16)
        end_s = speech_end_s + self.session.settings.turn.post_speech_pad_ms / 1000
        end = int((end_s - self._turn_audio_start_s) * ASR_SAMPLE_RATE)
        return audio[: max(0, end)]

    def _start_asr(self, event: TurnEvent) -> None:
        if self.asr_paused:
            return  # a card number is being keyed: the turn's audio is never transcribed
        self._asr_generation += 1
        generation = self._asr_generation
        audio = self._voiced_audio(event.speech_end_s)
        # Smart Turn hears the pause too (as pipecat feeds it), up to this frame.
        heard = np.concatenate(self._turn_audio) if self._turn_audio else audio
        started = time.perf_counter()
        speech_s = self.segmenter.speech_s
        self._asr_task = self.create_task(self._run_asr(generation, audio, heard, started,
                                                        speech_s),
                                          name=f"{self.session.call_id}-asr-{generation}")

    def _asks_smart_turn(self) -> bool:
        """An expected value is judged by the value rule alone (see ``turn_wait``)."""
        return self.smart_turn is not None and self.expect in (Expect.ANYTHING, Expect.YES_NO)

    async def _run_asr(self, generation: int, audio: np.ndarray, heard: np.ndarray,
                       started: float, speech_s: float) -> None:
        # Smart Turn runs beside ASR but never holds the decision up: when the transcript comes
        # first, the transcript rule stands until the model's answer may shorten the wait.
        smart = asyncio.ensure_future(self.smart_turn.predict(heard)) \
            if self._asks_smart_turn() else None
        transcript = await self.session.transcribe(audio, self.speech_hint)
        if generation != self._asr_generation or self.asr_paused:
            return  # the caller went on talking, or a keypad entry began: no text from it
        smart_p = smart_ms = None
        if smart is not None and smart.done():
            smart_p, smart_ms = smart.result()
        turn = self.session.settings.turn
        self._value_suspect |= implausible_gain(transcript.text, self._heard_before,
                                                speech_s - self._speech_s_before, turn)
        heard_before, self._heard_before = self._heard_before, transcript.text
        self._speech_s_before = speech_s
        wait = turn_wait(transcript.text, turn, self.expect, self.expect_length, smart_p,
                         heard_before, self._value_suspect)
        speculation = _Speculation(generation, transcript, started, time.perf_counter(), wait,
                                   smart_p, smart_ms)
        self._speculative = speculation
        ended = self.segmenter.set_required_silence(wait.silence_ms, self.stream_s)
        # Prepare the reply while the turn is being confirmed; not when it ends at once (a
        # value complete when its transcript comes): the preview would only compete with the
        # real answer for the CPU.
        if not ended:
            self._speculate(transcript)
        smart_said = "not yet" if smart_p is None else f"{smart_p:.2f}"
        logger.debug(f"{self.session.call_id}: heard {redact(transcript.text)!r} in "
                     f"{transcript.elapsed_ms:.0f} ms; end of turn after {wait.silence_ms:.0f} "
                     f"ms silence ({wait.rule}, smart turn {smart_said})")
        for event in ended:
            await self._on_turn_event(event)
        if smart is None or smart_p is not None:
            return
        smart_p, smart_ms = await smart
        if self._speculative is not speculation or generation != self._asr_generation:
            return  # the turn ended on the transcript rule, or the caller went on
        speculation.smart_turn_p, speculation.smart_turn_ms = smart_p, smart_ms
        fused = turn_wait(transcript.text, turn, self.expect, self.expect_length, smart_p,
                          heard_before, self._value_suspect)
        if fused.silence_ms < wait.silence_ms:
            speculation.wait = fused
            for ended in self.segmenter.set_required_silence(fused.silence_ms, self.stream_s):
                await self._on_turn_event(ended)

    def _speculate(self, transcript: Transcript) -> None:
        """Prepare the reply to this transcript while the end of turn is being confirmed."""
        text = transcript.text.strip()
        if not text or transcript.dropped or (self._barged and is_backchannel(text)):
            return
        seg = self.segmenter
        self.session.speculation.start(CallerTurn(
            call_id=self.session.call_id, index=self._turn_index + 1, text=text,
            language=transcript.language, asr_avg_logprob=transcript.avg_logprob,
            speech_start_s=seg.speech_start_s, speech_end_s=seg.speech_end_s,
            barge_in=self._barged))

    async def _end_turn(self, event: TurnEvent) -> None:
        if self.asr_paused:
            await self._untranscribed_turn(event)
            return
        confirmed = time.perf_counter()
        if event.forced or self._speculative is None:
            if not event.forced and self._asr_task is not None and not self._asr_task.done():
                await self._asr_task  # confirmation fired on the longest wait, ASR still running
            if self._speculative is None:
                generation = self._asr_generation = self._asr_generation + 1
                started = time.perf_counter()
                transcript = await self.session.transcribe(self._voiced_audio(event.speech_end_s),
                                                           self.speech_hint)
                self._speculative = _Speculation(generation, transcript, started,
                                                 time.perf_counter())
        speculation, self._speculative = self._speculative, None
        transcript = speculation.transcript
        asr_start, asr_end = speculation.asr_start, speculation.asr_end
        self._drop_turn_audio()
        barged, self._barged = self._barged, False
        # The caller's end of speech, on the wall clock: frames arrive in real time.
        speech_end_wall = confirmed - (self.stream_s - event.speech_end_s)
        confirmed = max(confirmed, asr_end)
        self._track_asr_budget(transcript)
        text = transcript.text.strip()
        discarded = self.session.speculation.confirmed(text)
        if not text or (barged and is_backchannel(text)):
            self.session.speculation.new_turn()
            logger.info(f"{self.session.call_id}: no turn "
                        f"({transcript.dropped or repr(redact(text))})")
            if barged and self.session.settings.barge_in.resume_on_backchannel and \
                    self.session.last_interrupted is not None:
                await self.push_frame(ResumeReplyFrame(self.session.last_interrupted.reply_id))
            return
        self._turn_index += 1
        # Records and logs never hold a card number (nor an expiry, CVV, PIN...) in clear; the
        # turn handler gets the words as heard and redacts what it keeps.
        record = TurnRecord(index=self._turn_index, caller_text=redact(text),
                            speech_start_s=event.speech_start_s, speech_end_s=event.speech_end_s,
                            times=TurnTimes(speech_end=speech_end_wall, asr_start=asr_start,
                                            asr_end=asr_end, confirmed=confirmed),
                            barge_in=barged, forced=event.forced, asr_dropped=transcript.dropped,
                            extra_wait_ms=self._extra_wait_ms(text),
                            end_rule="forced" if event.forced else
                            (speculation.wait.rule if speculation.wait else "longest-wait"),
                            smart_turn_p=speculation.smart_turn_p,
                            smart_turn_ms=speculation.smart_turn_ms,
                            speculations_discarded=discarded)
        if self.session.fast:
            # --fast feeds frames faster than real time: count the silence waited in stream time.
            record.times.speech_end = asr_start - (event.at_s - event.speech_end_s)
            record.times.confirmed = asr_end
        self.session.add_turn(record)
        interrupted = self.session.last_interrupted if barged else None
        turn = CallerTurn(call_id=self.session.call_id, index=self._turn_index, text=text,
                          language=transcript.language, asr_avg_logprob=transcript.avg_logprob,
                          speech_start_s=event.speech_start_s, speech_end_s=event.speech_end_s,
                          barge_in=barged,
                          interrupted_reply=interrupted.sentence if interrupted else None)
        await self.push_frame(CallerTurnFrame(turn=turn))

    async def _untranscribed_turn(self, event: TurnEvent) -> None:
        """Speech while a card number is keyed: dropped unheard, with a reminder to use the
        keypad unless it was only a short sound or came with keys (in-band tones)."""
        self._asr_generation += 1  # a transcription started before the pause is discarded
        self._speculative = None
        self.session.speculation.new_turn()
        self._drop_turn_audio()
        self._barged = False
        spoke_s = event.speech_end_s - event.speech_start_s
        keyed = self._key_at_s >= event.speech_start_s - self.frame_s
        logger.info(f"{self.session.call_id}: {spoke_s:.1f} s of speech during keypad entry, "
                    f"not transcribed")
        if spoke_s >= _REMIND_AFTER_SPEECH_S and not keyed:
            await self.push_frame(SayFrame(text=USE_THE_KEYPAD))

    def _extra_wait_ms(self, text: str) -> float:
        turn = self.session.settings.turn
        wait = turn_wait(text, turn, self.expect, self.expect_length).silence_ms
        return max(0.0, wait - turn.confirm_silence_ms)

    def _track_asr_budget(self, transcript: Transcript) -> None:
        budget = self.session.settings.budget
        if transcript.elapsed_ms <= budget.asr_ms:
            self._asr_overruns = 0
            return
        self._asr_overruns += 1
        if self._asr_overruns >= budget.asr_overruns_before_downgrade and budget.asr_fallback:
            self.session.downgrade_asr()
            self._asr_overruns = 0

    # -- barge-in -------------------------------------------------------------------------------

    async def _maybe_barge_in(self) -> None:
        settings = self.session.settings.barge_in
        # Not only while our audio plays: in the pause between two sentences of a reply (the
        # next still being synthesized, seconds on a busy machine) the caller who talks is
        # talking over it, and the rest of it must not follow.
        if not (settings.enabled and self.session.playout.reply_under_way):
            return
        if self.segmenter.speech_s * 1000 < settings.min_speech_ms:
            return
        self._barged = True
        logger.info(f"{self.session.call_id}: barge-in at {self.stream_s:.2f}s")
        # pipecat's own interruption: every processor drops queued reply frames and the
        # in-flight synthesis is cancelled; the playout stage clears its buffer.
        await self.push_frame(InterruptionFrame())

    @property
    def in_turn(self) -> bool:
        """The caller is speaking (a turn is open)."""
        return self.segmenter.in_turn

    async def asr_settled(self) -> None:
        """Wait for the transcription in flight (--fast mode keeps stream time still for it)."""
        if self._asr_task is not None and not self._asr_task.done():
            await asyncio.wait({self._asr_task})

    # -- end --------------------------------------------------------------------------------------

    def _drop_turn_audio(self) -> None:
        self._turn_audio = []

    async def _finish(self) -> None:
        """The caller's audio ended (hang-up or end of file): a turn in progress still counts."""
        event = self.segmenter.end_now(self.stream_s)
        if event is not None:
            await self._end_turn(event)
        if self._asr_task is not None and not self._asr_task.done():
            await self.cancel_task(self._asr_task)
