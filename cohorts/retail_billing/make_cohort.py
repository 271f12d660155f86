"""Builds the shipped spoken cohort (cohort.yaml and audio/) for `ivr eval`, deterministically.

Run from the repository root:
``.venv/bin/python cohorts/retail_billing/make_cohort.py SPEECH_DIR``, where SPEECH_DIR holds
the public recordings named in LICENSES.md (Free Spoken Digit Dataset digits, LibriVox, LJ
Speech, cmusphinx and faster-whisper test sentences).

Callers are real recordings (order numbers read digit by digit by two FSDD speakers; read
sentences that are out of the menu's scope) and synthesized callers in espeak-ng voices (British,
Scottish, Caribbean, New York, West Midlands, Lancaster, RP and American accents, male and
female variants): none is the IVR's own Piper voice. Every recording goes through a telephone
channel: band-limited to 300-3400 Hz, pink background noise at 10-20 dB SNR, 1-3 % of 20 ms packets
lost (zeroed, no concealment), G.711 mu-law coded and decoded, 8 kHz. The random draws come
from one seed, so the same inputs give the same files.

Diagnostic copies, written to OUT_DIR: ``--clean OUT_DIR`` (no noise or loss) and
``--piper OUT_DIR`` (cohorts/retail_billing_piper: the synthesized callers in four voices
re-timbred from Piper's en_US-joe, bench/voices.py, with the same channel draws). Piper draws
its own synthesis noise, so a ``--piper`` rebuild differs slightly from the shipped copy.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from scipy.signal import butter, sosfilt

from voice.audio import AudioChunk, mulaw_decode, mulaw_encode, read_audio, resample, write_wav

HERE = Path(__file__).parent
NOISY = True  # False (--clean): band-limiting and mu-law only, to tell ASR errors from flow errors
PIPER = False  # True (--piper): re-timbred Piper voices (bench/voices.py) instead of espeak-ng
RATE = 8000
SEED = 20261129
DEMO_PHONE = "+15550000001"  # the seeded demo customer (handoff.crm): order 456712, balance
DEMO_ORDER = "456712"
CARD = "4111111111111111"  # a test card number (Luhn-valid, never a real card)

# espeak-ng accents and voice variants; the IVR speaks with Piper's en_US-joe.
VOICES = ["en-gb", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-rp+m3", "en-us+m2",
          "en-gb-x-gbcwmd", "en-us+f2", "en-gb-x-gbclan", "en-us-nyc+m1"]


def espeak(text: str, voice: str, speed: int, pitch: int) -> AudioChunk:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "say.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w",
                        str(out), text], check=True, capture_output=True)
        return read_audio(out)


def telephone(chunk: AudioChunk, rng: random.Random) -> tuple[np.ndarray, dict]:
    """Band-limit, add noise at 10-20 dB SNR, drop 1-3 % of packets, mu-law; 8 kHz int16."""
    x = resample(chunk.samples, chunk.sample_rate, RATE).astype(np.float64)
    x = np.concatenate([np.zeros(int(0.4 * RATE)), x, np.zeros(int(0.3 * RATE))])
    x = sosfilt(butter(4, [300, 3400], btype="bandpass", fs=RATE, output="sos"), x)
    snr = rng.uniform(10, 20)
    gen = np.random.default_rng(rng.randrange(2**32))
    # Pink (1/f) noise, the usual model of room and street background, band-limited like the
    # speech. (White noise at the same SNR masks consonants far more than background noise on
    # a real line does.)
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    spectrum = gen.standard_normal(len(freqs)) + 1j * gen.standard_normal(len(freqs))
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    noise = sosfilt(butter(4, [300, 3400], btype="bandpass", fs=RATE, output="sos"),
                    np.fft.irfft(spectrum, len(x)))
    # Speech level over the active 20 ms frames (within 30 dB of the loudest), as a level
    # meter would read it (ITU-T P.56 in spirit), so the SNR means what it says.
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    power = (frames**2).mean(axis=1)
    active = power[power > power.max() / 1000]
    speech_power = float(active.mean()) if len(active) else 1.0
    noise *= np.sqrt(speech_power / 10 ** (snr / 10) / float(np.mean(noise**2)))
    y = x + noise if NOISY else x
    loss = rng.uniform(0.01, 0.03) if NOISY else 0.0
    frame = RATE // 50
    lost = 0
    for start in range(0, len(y), frame):
        if gen.random() < loss:
            y[start:start + frame] = 0.0
            lost += 1
    y = np.clip(y, -32768, 32767).astype(np.int16)
    return mulaw_decode(mulaw_encode(y)), {"snr_db": round(snr, 1),
                                           "packets_lost": f"{lost}/{-(-len(y) // frame)}"}


class Builder:
    def __init__(self, speech: Path) -> None:
        self.speech = speech
        self.rng = random.Random(SEED)
        self.calls: list[dict] = []
        self.sources: dict[str, dict] = {}
        self.voice_i = 0
        self.piper_i = -1  # the re-timbred Piper voice last used (--piper)
        (HERE / "audio").mkdir(exist_ok=True)

    def _save(self, name: str, chunk: AudioChunk, source: str) -> str:
        audio, channel = telephone(chunk, self.rng)
        write_wav(HERE / "audio" / f"{name}.wav", audio, RATE)
        self.sources[name] = {"source": source, **channel}
        return f"audio/{name}.wav"

    def say(self, name: str, text: str, voice: str | None = None) -> str:
        if voice is None:
            voice = VOICES[self.voice_i % len(VOICES)]
            self.voice_i += 1
        speed, pitch = self.rng.randint(135, 160), self.rng.randint(40, 60)
        if PIPER:  # the same draws as espeak's, so the channel's draws match too
            from bench.voices import piper_caller, piper_variant_name

            self.piper_i += 1
            return self._save(name, piper_caller(text, self.piper_i),
                              f"{piper_variant_name(self.piper_i)}: {text!r}")
        return self._save(name, espeak(text, voice, speed, pitch),
                          f"espeak-ng {voice} -s {speed} -p {pitch}: {text!r}")

    def digits(self, name: str, number: str, speaker: str) -> str:
        """A number read digit by digit by a real FSDD speaker, 0.3-0.5 s between digits."""
        parts = []
        for i, d in enumerate(number):
            chunk = read_audio(self.speech / "digits" / f"{d}_{speaker}_{(i + 2) % 5}.wav")
            parts.append(resample(chunk.samples, chunk.sample_rate, RATE))
            parts.append(np.zeros(int(RATE * self.rng.uniform(0.3, 0.5)), np.int16))
        return self._save(name, AudioChunk(np.concatenate(parts), RATE),
                          f"FSDD speaker {speaker} reading {number}")

    def real(self, name: str, relative: str, text: str) -> str:
        return self._save(name, read_audio(self.speech / relative), f"{relative}: {text!r}")

    def call(self, cid: str, steps: list, expect: dict, *, tags: list[str],
             caller: str | None = DEMO_PHONE) -> None:
        entry = {"id": cid}
        if caller:
            entry["caller_number"] = caller
        entry["tags"] = tags
        entry["steps"] = [{"say": s} if s.startswith("audio/") else {"keys": s[5:]}
                          for s in steps]
        entry["expect"] = {**expect, "latency_ms": expect.get("latency_ms", 6000)}
        self.calls.append(entry)


def keys(digits: str) -> str:
    return f"keys:{digits}"


def queue(intent: str, target: str, builder: Builder, lines: list[tuple[str, str]]) -> None:
    team = target.replace("_", " ")
    for cid, text in lines:
        builder.call(cid, [builder.say(cid, text)],
                     {"intent": intent, "route": target, "outcome": "transferred",
                      "tools": [], "must_say": [f"our {team} team"]}, tags=["spoken"])


def main(speech: Path) -> None:
    shutil.rmtree(HERE / "audio", ignore_errors=True)
    b = Builder(speech)
    order = {"intent": "order_status", "route": "contained", "outcome": "served",
             "slots": {"order_number": DEMO_ORDER},
             "tools": [{"name": "order_status", "args": {"order_number": DEMO_ORDER}}],
             "must_say": ["shipped with UPS"], "must_not_say": ["connect you"]}
    yes = lambda cid: b.say(cid, "Yes, that's right.")  # noqa: E731
    b.call("order-status-fsdd-george", [
        b.say("order-status-fsdd-george", "Hi, I'm calling to find out where my order is."),
        b.digits("order-number-george", DEMO_ORDER, "george"),
        yes("order-status-fsdd-george-yes")], order, tags=["spoken", "digits-spoken", "real"])
    b.call("order-status-fsdd-jackson", [
        b.say("order-status-fsdd-jackson", "Can you tell me if my package has shipped yet?"),
        b.digits("order-number-jackson", DEMO_ORDER, "jackson"),
        b.say("order-status-fsdd-jackson-yes", "Yes.")], order,
        tags=["spoken", "digits-spoken", "real"])
    b.call("order-status-espeak-digits", [
        b.say("order-status-espeak-digits", "My parcel still hasn't arrived."),
        b.say("order-number-espeak", "four five six, seven one two"),
        yes("order-status-espeak-digits-yes")], order, tags=["spoken", "digits-spoken"])
    b.call("order-status-keyed-number", [
        b.say("order-status-keyed-number", "I want to track my delivery."),
        keys(DEMO_ORDER + "#"), yes("order-status-keyed-number-yes")], order,
        tags=["spoken", "digits-keyed"])
    b.call("order-status-keyed-menu", [keys("1"), keys(DEMO_ORDER + "#"),
                                       yes("order-status-keyed-menu-yes")], order,
           tags=["digits-keyed", "menu-keyed"])

    queue("billing_question", "billing", b, [
        ("billing-double-charge", "I think I was charged twice for the same thing."),
        ("billing-unknown-fee", "There's a fee on my statement that I don't recognize."),
        ("billing-bill-high", "Why is my bill so much higher this month?")])
    b.call("billing-keyed-menu", [keys("2")], {"intent": "billing_question", "route": "billing",
                                               "outcome": "transferred", "tools": []},
           tags=["menu-keyed"])
    queue("refund", "returns", b, [
        ("refund-money-back", "I sent the jacket back two weeks ago and I still want my "
                              "money back."),
        ("refund-broken-item", "The blender arrived broken and I'd like a refund."),
        ("refund-return-how", "How do I return something I bought online?")])
    queue("technical_support", "tech_support", b, [
        ("tech-router", "My router keeps losing the internet connection."),
        ("tech-login", "I can't log in to the app, it says my password is wrong."),
        ("tech-wont-turn-on", "The speaker I bought won't turn on at all.")])
    queue("cancel_service", "retention", b, [
        ("cancel-subscription", "I'd like to cancel my subscription, please."),
        ("cancel-close-account", "I want to close my account."),
        ("cancel-membership", "Please stop my membership, I don't need it anymore.")])

    balance = {"intent": "payment", "route": "contained", "outcome": "served",
               "tools": [{"name": "account_balance", "args": {"account_number": "90000001"}}],
               "must_say": ["42 dollars and 50 cents"]}
    for cid, text in (("payment-balance", "How much do I owe on my account?"),
                      ("payment-due", "What's my balance, please?"),
                      ("payment-pay-bill", "I'd like to make a payment.")):
        b.call(cid, [b.say(cid, text)], balance, tags=["spoken"])
    b.call("payment-card-keyed", [
        b.say("payment-card-keyed", "I want to pay my bill by card."), keys(CARD + "#")],
        {"intent": "payment", "route": "billing", "outcome": "transferred",
         "slots": {"card_number": "[card ending 1111]"},
         "tools": [{"name": "account_balance", "args": {"account_number": "90000001"}}],
         "must_say": ["card ending 1 1 1 1"], "must_not_say": [CARD, "4 1 1 1 1"]},
        tags=["spoken", "digits-keyed", "card"])

    hours = {"intent": "opening_hours", "route": "contained", "outcome": "served",
             "tools": [], "must_say": ["Monday to Friday"]}
    for cid, text in (("hours-open", "What are your opening hours?"),
                      ("hours-sunday", "Are you open on Sunday?"),
                      ("hours-close", "What time does the shop close today?")):
        b.call(cid, [b.say(cid, text)], hours, tags=["spoken"])
    b.call("hours-keyed-menu", [keys("6")], hours, tags=["menu-keyed"])

    address = {"intent": "address_change", "route": "contained", "outcome": "served",
               "tools": [{"name": "open_case", "args": {}}],
               "must_say": ["address change request"]}
    for cid, text in (("address-moved", "I've moved house and need to update my address."),
                      ("address-change", "Can I change my delivery address?"),
                      ("address-new", "I have a new home address.")):
        b.call(cid, [b.say(cid, text)], address, tags=["spoken"])

    human = {"intent": "talk_to_human", "route": "general", "outcome": "transferred",
             "tools": [], "must_say": ["colleague"]}
    for cid, text in (("human-real-person", "Can I speak to a real person, please?"),
                      ("human-agent", "Agent. Agent please."),
                      ("human-representative", "I want to talk to a human.")):
        b.call(cid, [b.say(cid, text)], human, tags=["spoken", "human"])
    b.call("human-keyed-zero", [keys("0")], human, tags=["menu-keyed", "human"])

    oos = {"intent": "out_of_scope", "route": "contained", "outcome": "unresolved",
           "tools": [], "must_say": ["press 1"]}
    for cid, rel, text in (
            ("oos-librivox-0880", "librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
             "He was not an ill-disposed young man"),
            ("oos-librivox-0930", "librivox/sense_and_sensibility_01_austen_64kb-0930.wav",
             "He might even have been made amiable himself"),
            ("oos-ljspeech-0002", "ljspeech/LJ001-0002.wav",
             "in being comparatively modern."),
            ("oos-librivox-0890", "librivox/sense_and_sensibility_01_austen_64kb-0890.wav",
             "unless to be rather cold hearted and rather selfish is to be ill disposed"),
            ("oos-forever", "misc/forever_16k.wav", "feels like these days go on forever")):
        b.call(cid, [b.real(cid, rel, text)], oos, tags=["real", "out-of-scope"])
    for cid, text in (("oos-weather", "What's the weather going to be like tomorrow?"),
                      ("oos-joke", "Tell me a joke.")):
        b.call(cid, [b.say(cid, text)], oos, tags=["spoken", "out-of-scope"])

    b.call("frustrated-order", [
        b.say("frustrated-order", "Where is my order? I've been waiting for three weeks!"),
        b.say("frustrated-order-2", "This is ridiculous. I've called three times already and "
                                    "nobody helps me. I'm sick of this."),
        b.say("frustrated-order-3", "Useless. Absolutely useless.")],
        {"intent": "order_status", "route": "general", "outcome": "transferred"},
        tags=["spoken", "frustrated"])
    b.call("frustrated-billing", [
        b.say("frustrated-billing", "You charged me twice again! This is the third time this "
                                    "has happened and I'm furious."),
        ], {"intent": "billing_question", "route": "billing", "outcome": "transferred"},
        tags=["spoken", "frustrated"])

    what = ("A diagnostic copy (re-timbred Piper voices, bench/voices.py) of the shipped"
            if PIPER else "A diagnostic copy (no noise or packet loss) of the shipped"
            if not NOISY else "The shipped")
    head = (f"# {what} spoken cohort of the retail-and-billing menu, generated by\n"
            "# make_cohort.py (do not edit by hand: change the script and rerun it).\n"
            "# Sources and the telephone channel of each recording: SOURCES.yaml.\n")
    name = "retail-billing-spoken" + ("-piper" if PIPER else "" if NOISY else "-clean")
    body = {"cohort": name, "description": "Every intent of the shipped "
            "menu, out-of-scope callers, requests for a human, digits spoken and keyed, "
            "frustrated callers; real and synthesized voices through a telephone channel.",
            "calls": b.calls}
    (HERE / "cohort.yaml").write_text(head + yaml.safe_dump(body, sort_keys=False, width=100))
    (HERE / "SOURCES.yaml").write_text(yaml.safe_dump(b.sources, sort_keys=True, width=100))
    print(f"{len(b.calls)} calls, {len(b.sources)} recordings in {HERE}")


if __name__ == "__main__":
    # Diagnostic copies elsewhere: ``--clean OUT_DIR`` (no noise or loss: ASR errors apart from
    # flow errors), ``--piper OUT_DIR`` (natural-sounding synthetic voices, same channel).
    for flag in ("--clean", "--piper"):
        if flag in sys.argv:
            NOISY = flag != "--clean"
            PIPER = flag == "--piper"
            if PIPER:  # bench/voices.py, from the repository this script sits in
                sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
            HERE = Path(sys.argv[sys.argv.index(flag) + 1])
            HERE.mkdir(parents=True, exist_ok=True)
    main(Path(sys.argv[1]))
