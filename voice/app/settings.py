"""One typed settings object for the whole IVR: a YAML file, overridden by environment variables.

Environment variables use the prefix ``IVR_`` and ``__`` between levels, for example
``IVR_TURN__CONFIRM_SILENCE_MS=500`` or ``IVR_MODELS__ASR_MODEL=/opt/whisper-small``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from handoff.settings import HandoffSettings
from intents.flows.settings import FlowSettings
from models.config import ModelSettings


class Section(BaseModel):
    """A settings section: unknown keys are refused (a misspelt option must not be ignored)."""

    model_config = ConfigDict(extra="forbid")


class AudioSettings(Section):
    """Audio framing at the transport edge."""

    frame_ms: int = Field(20, description="Frame length. 20 ms is the RTP/G.711 packet size; "
                          "shorter frames cost more per-frame overhead, longer ones add latency.")
    inband_dtmf: bool = Field(True, description="Detect keypad tones in the caller's audio, for "
                              "transports that carry no RFC 4733 events. Costs a matrix product "
                              "per frame.")

    @model_validator(mode="after")
    def _check(self) -> AudioSettings:
        if self.frame_ms not in (10, 20, 30):
            raise ValueError("audio.frame_ms must be 10, 20 or 30 (webrtcvad frame sizes)")
        return self


class VadSettings(Section):
    """Voice activity detection: webrtcvad as a cheap gate, Silero to confirm."""

    use_webrtcvad: bool = Field(True, description="Run webrtcvad first; frames it calls silence "
                                "skip Silero. Saves CPU per call; off makes Silero see every "
                                "frame.")
    webrtcvad_mode: int = Field(1, ge=0, le=3, description="webrtcvad aggressiveness. Higher "
                                "rejects more line noise but clips soft word onsets. At 2 the "
                                "gate dropped 17 of 300 soft digits (FSDD over mu-law) before "
                                "Silero heard them, cutting callers off mid-number; at 1 none "
                                "(Silero still rejects the noise).")
    use_silero: bool = Field(True, description="Confirm speech with Silero. Off leaves webrtcvad "
                             "alone, which fires on noise and music.")
    silero_threshold: float = Field(0.5, gt=0, lt=1, description="Speech probability above which "
                                    "a frame counts as speech. Lower catches quiet talkers and "
                                    "more noise.")


class TurnSettings(Section):
    """End-of-turn detection.

    The turn is decided in two steps. After ``early_pause_ms`` of silence the audio so far is sent
    to ASR speculatively; the turn is confirmed once the silence reaches the required length,
    which depends on what was said: a complete sentence needs ``confirm_silence_ms``, a trailing
    "and"/"um" needs ``incomplete_silence_ms``, and a digit string while the flow expects digits
    needs ``digits_silence_ms`` (callers pause between groups of an account number). If the caller
    resumes before confirmation, the speculative transcript is dropped and the turn continues.
    """

    min_speech_ms: int = Field(100, description="Speech shorter than this is not a turn (clicks, "
                               "coughs). Larger ignores more noise and drops a curt 'no'.")
    early_pause_ms: int = Field(120, description="Silence after which ASR starts speculatively. "
                                "Smaller answers sooner and runs ASR more often mid-sentence.")
    confirm_silence_ms: int = Field(360, description="Silence that ends a turn whose text looks "
                                    "complete. Smaller answers sooner and cuts off slow talkers.")
    incomplete_silence_ms: int = Field(1000, description="Silence that ends a turn whose text "
                                       "trails off ('and', 'um', a comma).")
    digits_silence_ms: int = Field(1600, description="Silence that ends a turn ending in digits "
                                   "while the flow expects a number read out in groups.")
    value_pause_ms: int = Field(2400, description="Pause allowed after each digit group of an "
                                "expected value that is still incomplete (fewer digits than the "
                                "flow's length, a card failing Luhn) or unclear (a lone digit "
                                "heard as a word). It covers the longest pause between groups "
                                "(1 s) plus a soft digit the VAD misses and the pause after it; "
                                "the false-cut-off test measures it. Only a caller who stops "
                                "half-way waits this long.")
    value_complete_silence_ms: int = Field(160, description="Silence that ends a turn once the "
                                           "value the flow expects is complete and valid (the "
                                           "order number's length, a Luhn-valid card, a date, a "
                                           "yes or no). Nothing more is coming, so no long wait.")
    min_digit_speech_ms: int = Field(250, description="Least voiced time one spoken digit "
                                     "takes. A transcript that gained more digits than the new "
                                     "speech could hold (one spare) is not trusted to complete "
                                     "a value.")
    # Off by default: with a 'complete' ending the turn after 200 ms of silence it cut read
    # sentences at their inner pauses (a barge-in sentence, LibriVox callers of the eval cohort),
    # and a cut caller costs more than the 100-400 ms it saves at three concurrent calls.
    speculative_reply: bool = Field(True, description="At the early pause, ask the turn "
                                    "handler what it would answer (without side effects) and "
                                    "synthesize the answer's first clause while the end of turn "
                                    "is confirmed; it is played only if the confirmed turn's "
                                    "reply opens with exactly that clause.")
    smart_turn: bool = Field(False, description="Run the Smart Turn v3.2 model (pipecat's "
                             "bundled ONNX, CPU) on the turn's audio at the early pause, beside "
                             "the transcript rule: a confident 'complete' ends a complete-looking "
                             "turn at once, a confident 'incomplete' waits as for a trailing "
                             "'and'. Expected values are judged by the value rule alone.")
    smart_turn_model_path: str | None = Field(None, description="Smart Turn ONNX file; None: "
                                              "the one inside the pipecat-ai wheel.")
    smart_turn_complete: float = Field(0.8, gt=0, lt=1, description="Probability at or above "
                                       "which Smart Turn's 'complete' ends the turn after "
                                       "smart_turn_silence_ms.")
    smart_turn_silence_ms: int = Field(200, description="Silence that ends a turn Smart Turn "
                                       "is confident is complete (pipecat's own VAD stop time). "
                                       "At the bare early pause it cut 'Hi, I'd like...' after "
                                       "'Hi'.")
    smart_turn_incomplete: float = Field(0.0, ge=0, lt=1, description="Probability below "
                                         "which the turn waits incomplete_silence_ms. 0: never "
                                         "(the bench's read sentences over G.711 scored below "
                                         "0.15 on 4 of 10 complete turns, each then waiting "
                                         "1 s). A late answer only ever shortens the wait.")
    max_turn_s: float = Field(30.0, description="A monologue is cut into turns of at most this "
                              "length (Whisper's window is 30 s).")
    pre_speech_pad_ms: int = Field(200, description="Audio kept before detected speech onset so "
                                   "ASR hears the first phoneme.")
    post_speech_pad_ms: int = Field(120, description="Audio kept after the last speech frame. "
                                    "More keeps trailing consonants and feeds Whisper silence, "
                                    "on which it hallucinates.")


class BargeInSettings(Section):
    """Caller speech while we talk."""

    enabled: bool = True
    min_speech_ms: int = Field(100, description="Confirmed speech needed before our audio stops. "
                               "VAD onset and one frame of playout come on top, and the stop "
                               "deadline is 200 ms; larger rides over more coughs, and a cut "
                               "that turns out to be noise is resumed anyway.")
    resume_on_backchannel: bool = Field(True, description="If the interrupting sound transcribes "
                                        "to nothing or to a backchannel ('uh-huh', 'okay'), "
                                        "resume the interrupted reply from its sentence.")


class AsrSettings(Section):
    """Whisper decoding options (the model itself is chosen in ``models``)."""

    language: str | None = Field("en", description="Fixed language skips detection (faster). "
                                 "None detects it, only with a multilingual model.")
    beam_size: int = Field(1, ge=1, description="1 is greedy: fastest; 5 is Whisper's default and "
                           "about twice as slow on CPU for a small accuracy gain.")
    no_speech_threshold: float = Field(0.6, description="Segments Whisper itself marks as "
                                       "no-speech above this probability are dropped.")
    log_prob_threshold: float = Field(-1.0, description="Segments with average log-probability "
                                      "below this and high no-speech probability are dropped.")
    speech_hints: bool = Field(True, description="Prime Whisper with the words the caller is "
                               "likely to say: the menu's (menu speech_hints) for an open "
                               "question, none while a value is expected. On the shipped "
                               "cohort it raised task completion from 45 % to 57 % "
                               "(bench/results/eval_gate.md).")
    workers: int = Field(1, ge=1, description="Concurrent transcriptions per process. Each uses "
                         "models.asr_cpu_threads threads.")
    batch_window_ms: float = Field(10.0, ge=0, description="Cross-call batching (the inference "
                                   "tier): how long the first utterance waits for others with "
                                   "the same encoder window to share its forward pass. Longer "
                                   "batches more under load and adds that much to a lone turn; "
                                   "must stay below budget.asr_ms, and no utterance waits past "
                                   "its deadline.")
    max_batch: int | None = Field(None, ge=1, description="Most utterances in one batched "
                                  "forward pass. None: 16 when Whisper runs on CUDA, 1 (no "
                                  "batching) on a CPU, where bench/gpu.py measured no gain and a "
                                  "batch makes each turn wait for the others' encoder time.")


class TtsSettings(Section):
    """Piper synthesis."""

    length_scale: float | None = Field(None, description="Speaking rate: below 1 is faster. None "
                                       "keeps the voice's own.")
    acknowledgement: str = Field("One moment.", description="Said when the reply runs late "
                                 "(degradation ladder step 'acknowledge').")


class BudgetSettings(Section):
    """The per-turn latency budget, in milliseconds, and what acts when a stage overruns.

    The stages partition the caller's wait, from the end of their speech to the first sample of
    our reply handed to the transport.
    """

    end_of_turn_ms: float = Field(400, description="End of speech -> turn decided (ASR started).")
    asr_ms: float = Field(350, description="ASR of the final turn audio.")
    nlu_ms: float = Field(30, description="Intent detection and caller signals inside the turn "
                          "manager (one MiniLM encoding, about 7-20 ms here under call load).")
    turn_manager_ms: float = Field(300, description="Turn manager to first reply text (LLM first "
                                   "token or template). Overrun: switch to the template reply.")
    tts_first_audio_ms: float = Field(150, description="Reply text -> first synthesized audio.")
    transport_ms: float = Field(40, description="First synthesized audio -> first sample handed "
                                "to the transport.")
    total_ms: float = Field(900, description="Caller-perceived total.")
    acknowledge_after_ms: float = Field(1200, description="If no reply audio has started this "
                                        "long after the turn was decided, say the acknowledgement "
                                        "while work continues.")
    asr_overruns_before_downgrade: int = Field(3, description="Consecutive ASR overruns after "
                                               "which the call switches to budget.asr_fallback.")
    asr_fallback: str | None = Field(None, description="Smaller ASR model used after repeated "
                                     "overruns (for example 'tiny.en' when the main one is "
                                     "'base'). None disables that step.")


class CallSettings(Section):
    """The conversation and the limits of one call, whatever the transport."""

    handler: Literal["echo", "llm", "manager"] = Field(
        "manager", description="'manager': the intent-driven turn manager with CRM tools; 'echo' "
        "repeats what was understood (the latency benchmark's handler); 'llm' answers with the "
        "configured LLM alone.")
    menu: str | None = Field(None, description="Menu YAML for the turn manager; None: the shipped "
                             "retail-and-billing example.")
    llm_phrasing: bool = Field(False, description="Let the LLM at models.llm_url rewrite the "
                               "turn manager's factual replies; a rewrite that adds a number, "
                               "name or action not in the facts is dropped for the template. Off "
                               "by default: the embedded 135M model rarely passes.")
    llm_answers: bool = Field(False, description="When nothing in the menu fits, let the LLM at "
                              "models.llm_url answer with the CRM tools (prompt and tool schema "
                              "in voice/prompts/); its answer is spoken only if it passes the "
                              "facts check. Off by default, like llm_phrasing.")
    crm_url: str = Field("sqlite:///var/crm.sqlite", description="CRM database (SQLAlchemy URL).")
    greeting: str | None = Field(None, description="Said when the call starts. None: no greeting.")
    llm_system_prompt: str = Field(
        "You are the voice assistant of a contact centre. Answer in one or two short spoken "
        "sentences. Never invent account details.",
        description="System prompt of the 'llm' handler.")
    llm_max_tokens: int = Field(60, description="Reply length cap for the 'llm' handler.")
    max_call_s: float = Field(1800.0, gt=0, description="A call longer than this is ended with a "
                              "goodbye and BYE.")
    max_silence_s: float = Field(20.0, gt=0, description="Caller silence (no speech, no keys) "
                                 "after which the IVR says goodbye and hangs up.")
    goodbye_silence: str = Field("I haven't heard anything for a while, so I'll end the call "
                                 "now. Please call again any time. Goodbye.")
    goodbye_max_duration: str = Field("We've reached the time limit for this call. Please call "
                                      "again if you need more help. Goodbye.")


class SipSettings(Section):
    """The SIP listener (PJSIP through pjsua2) and the limits on what it accepts.

    Trunk modes: peering trunks are admitted by source address (``allow_from``); register-based
    trunks by registering to ``registrar`` with digest credentials. An INVITE from anywhere else
    is refused with 403 before any pipeline starts.
    """

    host: str = Field("0.0.0.0", description="Address the SIP transports bind to.")
    public_address: str | None = Field(None, description="Address written in Contact and SDP "
                                       "when it differs from ``host`` (NAT, 0.0.0.0 binds).")
    port: int = Field(5060, ge=0, le=65535, description="UDP and TCP listening port (0: any "
                      "free port, reported in the log).")
    transports: list[Literal["udp", "tcp", "tls"]] = Field(
        ["udp", "tcp"], description="Transports to listen on. TLS needs tls_cert_file and "
        "tls_key_file and listens on tls_port.")
    tls_port: int = Field(5061, ge=0, le=65535)
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_ca_file: str | None = None
    codecs: list[Literal["PCMU", "PCMA", "G722"]] = Field(
        ["PCMU", "PCMA", "G722"], description="Codecs offered and accepted, in preference order. "
        "G.722 is wideband (16 kHz) and costs more CPU; anything not listed is disabled, and an "
        "offer with none of these is answered 488.")
    early_media: bool = Field(False, description="Answer 183 with SDP before 200, so the trunk "
                              "opens the media path while the call is still ringing.")
    answer_delay_ms: int = Field(0, ge=0, description="Ringing time before the 200 OK. 0 answers "
                                 "at once (fastest); some PBXs expect a ring.")
    allow_from: list[str] = Field(["127.0.0.1/32", "::1/128"], description="Networks (CIDR) "
                                  "whose INVITEs are accepted (peering trunks, the PBX). Empty "
                                  "with a registrar: only the registrar's address is accepted.")
    registrar: str | None = Field(None, description="SIP URI of the registrar of a register-based "
                                  "trunk, e.g. sip:sip.example.net. None: no registration.")
    username: str | None = Field(None, description="Digest user (and the AOR user part).")
    password: str | None = Field(None, description="Digest password.")
    realm: str = Field("*", description="Digest realm; '*' answers any realm.")
    register_expires_s: int = Field(300, ge=60)
    max_calls: int = Field(3, ge=1, le=4, description="Concurrent inbound calls; beyond it INVITEs "
                           "get 503 with Retry-After. The pjsua2 wheel allows 4 call legs per "
                           "process, and a warm transfer's agent leg takes one: 3 leaves room "
                           "for one transfer at a time, 4 refuses a transfer when all four are "
                           "callers. More calls: more processes behind the SIP load balancer.")
    retry_after_s: int = Field(30, ge=1, description="Retry-After sent with 503.")
    session_timer: Literal["inactive", "optional", "required", "always"] = Field(
        "optional", description="RFC 4028 session timers: 'optional' uses them when the peer "
        "does, so a call whose peer vanished without BYE is cleaned up.")
    session_expires_s: int = Field(1800, ge=90)
    x_headers: list[str] = Field([], description="INVITE headers copied into the call context for "
                                 "CRM lookup and routing (e.g. X-Customer-Id).")
    rtp_port: int = Field(40000, ge=1024, le=65535, description="First RTP port.")
    rtp_port_range: int = Field(1000, ge=10)
    clock_rate: int = Field(16000, description="PJSIP conference bridge rate. 16 kHz keeps G.722 "
                            "wideband; G.711 calls are resampled inside PJSIP.")
    ptime_ms: int = Field(20, description="RTP packet time. 20 ms is what trunks expect.")
    bridge_ptime_ms: int = Field(10, description="Conference bridge frame time. 10 ms halves the "
                                 "bridge's buffering delay against 20 ms at twice the callbacks.")
    jb_init_ms: int = Field(20, description="Jitter buffer initial prefetch. Lower answers sooner "
                            "and drops more on a jittery trunk.")
    jb_min_pre_ms: int = Field(20, description="Jitter buffer minimum prefetch.")
    jb_max_pre_ms: int = Field(100, description="Jitter buffer maximum prefetch.")
    jb_max_ms: int = Field(300, description="Jitter buffer capacity.")
    inbox_frames: int = Field(50, ge=5, description="Caller frames queued between PJSIP's thread "
                              "and the pipeline (1 s at 20 ms). Beyond it the oldest are dropped "
                              "and counted: the queue never grows without bound.")
    shutdown_grace_s: float = Field(10.0, ge=0, description="On SIGTERM, calls in progress get "
                                    "this long to finish before they are ended with BYE.")
    user_agent: str = Field("SIP", description="User-Agent/Server header of our requests and "
                            "responses. Generic by default: naming the product and version helps "
                            "a scanner pick exploits.")
    log_level: int = Field(1, ge=0, le=6, description="PJSIP log level (stderr).")
    refusals_before_ignore: int = Field(20, ge=1, description="Refused requests (403, 400, 488, "
                                        "...; not a full server's 503) from one source within "
                                        "refusal_window_s after which it is ignored for ignore_s. "
                                        "Lower stops a scanner sooner and risks ignoring a "
                                        "misconfigured trunk for a while.")
    refusal_window_s: float = Field(10.0, gt=0)
    ignore_s: float = Field(60.0, ge=0, description="How long an offending source's requests are "
                            "dropped unanswered.")
    tcp_max_connections: int = Field(24, ge=1, description="Open SIP TCP/TLS connections in all. "
                                     "PJSIP's I/O queue in the pjsua2 wheel has 64 handles for "
                                     "every socket of the process (SIP, and RTP+RTCP per call "
                                     "leg); more connections are closed at once.")
    tcp_max_per_source: int = Field(4, ge=1, description="Open SIP TCP/TLS connections from one "
                                    "address. A trunk or an edge proxy needs one or two.")
    tcp_first_message_s: float = Field(5.0, gt=0, description="A TCP/TLS connection that sends no "
                                       "SIP request this long after it opens is closed.")
    outbound_proxy: str | None = Field(None, description="SIP URI every call we place (the "
                                       "agent legs of warm transfers) is routed through, e.g. "
                                       "sip:10.0.0.5:5060;lr for the Kamailio edge of a "
                                       "cluster. None: dialled directly.")

    @model_validator(mode="after")
    def _check(self) -> SipSettings:
        if "tls" in self.transports and not (self.tls_cert_file and self.tls_key_file):
            raise ValueError("sip.transports has 'tls': set sip.tls_cert_file and "
                             "sip.tls_key_file")
        if self.registrar and not (self.username and self.password):
            raise ValueError("sip.registrar needs sip.username and sip.password")
        if not self.codecs:
            raise ValueError("sip.codecs: list at least one of PCMU, PCMA, G722")
        return self


class WebRtcSettings(Section):
    """Browser calls (``/call``): signalling tokens, ICE servers, media timeouts."""

    enabled: bool = Field(True, description="Serve /call and the WebRTC signalling API.")
    secret: SecretStr | None = Field(None, description="A shared secret that may ask for call "
                                     "tokens besides the API tokens (a web site's own key). "
                                     "None: only the API tokens.")
    token_ttl_s: float = Field(60.0, gt=0, le=3600, description="How long a call token from "
                               "/api/webrtc/token may be used to place one call.")
    stun_urls: list[str] = Field([], description="STUN servers ('stun:host:3478') for the "
                                 "browser and the server. Empty: host candidates only "
                                 "(loopback and LAN).")
    turn_urls: list[str] = Field([], description="TURN servers ('turn:host:3478?transport=udp'); "
                                 "see deploy/coturn/.")
    turn_username: str | None = None
    turn_password: SecretStr | None = None
    connect_timeout_s: float = Field(15.0, gt=0, description="ICE and DTLS must complete and "
                                     "the caller's audio arrive within this after the answer.")
    media_timeout_s: float = Field(6.0, gt=0, description="No audio from the browser for this "
                                   "long ends the call (a peer that vanished without closing; "
                                   "ICE consent alone takes about 30 s to fail).")
    max_offer_bytes: int = Field(20000, ge=1000, description="Larger SDP offers are refused.")
    jitter_prefetch_frames: int = Field(1, ge=1, le=8, description="Caller packets aiortc holds "
                                        "before decoding the oldest. aiortc's own is 4 (80 ms "
                                        "at 20 ms packets); 1 suits loopback and a LAN.")
    echo_cancellation: bool = Field(True, description="The /call page asks the browser to "
                                    "cancel the echo of our voice in the caller's microphone "
                                    "(a laptop's loudspeakers). Off for callers on headsets or a "
                                    "line feed, which have no echo: Chrome's canceller, until it "
                                    "has found there is none (seconds of our speech), takes the "
                                    "caller's voice while we speak for echo and removes it, so "
                                    "a caller who talks over a reply goes unheard.")


class ServerSettings(Section):
    """`ivr serve`: the HTTP side and the call store."""

    http_host: str = Field("127.0.0.1", description="HTTP bind address (health, metrics, API, "
                           "agent desktop). Put a reverse proxy with TLS in front for remote use.")
    http_port: int = Field(8080, ge=0, le=65535)
    store_url: str = Field("sqlite:///var/ivr.sqlite", description="Call records, turns and "
                           "handoffs (SQLAlchemy URL; PostgreSQL for several nodes).")
    spool_dir: str = Field("var/spool", description="Where a record goes as a JSON file when the "
                           "store cannot be written (a full disk, a lost database): nothing is "
                           "lost, and the spool can be replayed.")
    api_tokens: list[SecretStr] = Field(default_factory=list, description="Tokens that may "
                                        "read caller data over HTTP (/api/calls, "
                                        "/api/handoffs): 'Authorization: Bearer <token>'. "
                                        "'NAME:TOKEN' or a bare token. Agents' "
                                        "handoff.desktop_tokens are accepted too. With neither, "
                                        "a token is generated at first start into "
                                        "api_token_file.")
    api_token_file: str = Field("var/api-token", description="Where the generated API token "
                                "is kept (mode 0600) when no token is configured; the log says "
                                "where, never what.")
    allowed_hosts: list[str] | None = Field(None, description="Host header values the HTTP "
                                            "server answers (DNS rebinding defence); '*.x.org' "
                                            "wildcards, '*' for any. None: localhost, "
                                            "127.0.0.1, ::1, the host's name, http_host and "
                                            "sip.public_address.")
    openapi_docs: bool = Field(False, description="Serve /docs and /openapi.json. Off: the API "
                               "description is no map for a scanner.")
    worker_id: str | None = Field(None, description="This worker's identity in its call rows "
                                  "and heartbeat; at start-up it closes its own rows left open "
                                  "by a crash (end_reason worker-lost), other workers' only "
                                  "once their heartbeat is worker_lost_after_s old. None: "
                                  "'<hostname>:<sip.port>'. Set a stable, unique one when the "
                                  "hostname changes on restart (containers) and several workers "
                                  "share a database.")
    heartbeat_interval_s: float = Field(5.0, gt=0, description="How often this worker writes "
                                        "its heartbeat to the call store (the workers table) "
                                        "and looks for workers that stopped writing theirs.")
    worker_lost_after_s: float = Field(30.0, gt=0, description="A worker whose heartbeat is "
                                       "older than this is dead: any live worker sharing the "
                                       "database closes its open calls as worker-lost. Several "
                                       "heartbeat intervals, so that a busy worker is not "
                                       "declared dead; a slow one that comes back writes its "
                                       "calls' real end over it.")
    desktop_poll_s: float = Field(1.0, gt=0, description="With a SQLite handoff store (no "
                                  "LISTEN/NOTIFY), how often the agent desktop polls it for "
                                  "handoffs of other workers; with PostgreSQL, the wait before "
                                  "a lost LISTEN connection is opened again.")

    @model_validator(mode="after")
    def _pool(self) -> ServerSettings:
        if self.worker_lost_after_s < 2 * self.heartbeat_interval_s:
            raise ValueError(f"server.worker_lost_after_s ({self.worker_lost_after_s}) must be "
                             f"at least twice server.heartbeat_interval_s "
                             f"({self.heartbeat_interval_s}): one late heartbeat must not make "
                             "a live worker's calls worker-lost")
        return self


class ClusterSettings(Section):
    """`ivr cluster`: a Kamailio edge in front of N `ivr serve` workers on this host, run by
    supervisord. The workers' own settings are this file's, with the ports below per worker."""

    workers: int = Field(3, ge=1, le=64, description="Workers started (each carries "
                         "sip.max_calls calls).")
    edge_host: str = Field("127.0.0.1", description="Address Kamailio listens on: the one "
                           "address trunks send INVITEs to.")
    edge_port: int = Field(5060, ge=1, le=65535, description="Kamailio's SIP port (UDP and TCP).")
    worker_host: str = Field("127.0.0.1", description="Address the workers bind SIP and RTP "
                             "to; the trunk sends RTP to it directly (see deploy/kamailio/ "
                             "README.md for when rtpengine is needed instead).")
    first_sip_port: int = Field(5070, ge=1, le=65535, description="Worker i listens on "
                                "first_sip_port + i.")
    first_http_port: int = Field(8081, ge=1, le=65535, description="Worker i serves HTTP on "
                                 "first_http_port + i.")
    rtp_ports_per_worker: int = Field(200, ge=20, description="Worker i's RTP ports start at "
                                      "sip.rtp_port + i * this (4 legs need 8 ports).")
    trunk_allow_from: list[str] = Field(["127.0.0.1/32"], description="Networks (CIDR) whose "
                                        "INVITEs the edge accepts: trunks and PBXs. The workers "
                                        "accept calls from the edge only.")
    probe_interval_s: int = Field(2, ge=1, description="Kamailio probes each worker with "
                                  "OPTIONS this often; one unanswered probe marks it down, one "
                                  "answered brings it back. Shorter notices a dead worker "
                                  "sooner at more OPTIONS traffic.")
    probe_timeout_ms: int = Field(2000, ge=100, description="A worker that sends no response "
                                  "this long after an INVITE or OPTIONS is taken as down (the "
                                  "INVITE fails over to the next worker). A worker answers "
                                  "from a Python thread: at 1000 ms a worker busy with three "
                                  "calls on two loaded cores missed a probe and was marked "
                                  "down.")
    pike_requests: int = Field(40, ge=1, description="Requests per pike_window_s from one "
                               "source address above which the edge drops its requests "
                               "(flood), trunks included; the workers are not limited. A "
                               "trunk carrying many calls needs a higher figure.")
    pike_window_s: int = Field(2, ge=1)
    directory: str = Field("var/cluster", description="Where `ivr cluster` writes the generated "
                           "configs (kamailio.cfg, dispatcher.list, worker-N.yaml, "
                           "supervisord.conf) and the logs.")


class LiveKitSettings(Section):
    """The LiveKit Agents worker (``python -m voice.livekit``). The server's address and keys
    come from LiveKit's own variables: LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET."""

    agent_name: str = Field("voice-ivr", description="Name rooms dispatch to (explicit "
                            "dispatch; a SIP dispatch rule names it in its room config).")
    transfer_to: dict[str, str] = Field({}, description="Human queue -> SIP URI or tel: number "
                                        "the caller is transferred to (LiveKit SIP sends a "
                                        "REFER). A queue missing here: the call is ended after "
                                        "the transfer announcement, and the log says why.")
    thread_jobs: bool = Field(True, description="Run calls as threads of one process, which "
                              "shares the loaded models; LiveKit's default, a process per "
                              "call, loads them again for each (about 0.8 GB).")


class TracingSettings(Section):
    """Journey traces (OpenTelemetry). Whether and where they are exported is set by the
    standard OTEL_* variables (see ``voice.app.tracing``); these are what the traces carry."""

    customer_key: SecretStr | None = Field(None, description="Key of the keyed hash that "
                                           "makes customer.id from the caller's number. None: "
                                           "one generated into customer_key_file. Changing it "
                                           "breaks the link between a caller's old and new "
                                           "journeys.")
    customer_key_file: str = Field("var/customer-key", description="Where the generated key "
                                   "is kept (mode 0600).")
    journey_window_days: float = Field(7.0, gt=0, description="A call within this many days "
                                       "of the caller's first call joins that call's journey "
                                       "(journey.id); longer links more repeat calls into one "
                                       "journey.")


class CarrierSettings(Section):
    """Calls a telephony provider streams over a WebSocket: Twilio Media Streams (the voice
    webhook at ``/twilio/voice``, the stream at ``/twilio/stream/<token>``) and Telnyx media
    streaming through a TeXML application (``/telnyx/voice``, ``/telnyx/stream/<token>``)."""

    twilio_auth_token: SecretStr | None = Field(None, description="The Twilio account's auth "
                                                "token: it signs the voice webhook "
                                                "(X-Twilio-Signature) and keys the per-call "
                                                "stream tokens. None: the Twilio routes are off.")
    telnyx_public_key: str | None = Field(None, description="The Telnyx account's public key "
                                          "(base64, from the portal's Keys & Credentials): it "
                                          "verifies the Ed25519 signature of the TeXML "
                                          "webhook. None: the Telnyx routes are off.")
    telnyx_signature_tolerance_s: float = Field(300.0, gt=0, description="How far a Telnyx "
                                                "webhook's signed timestamp may be from our "
                                                "clock: longer tolerates clock skew, shorter "
                                                "narrows the window to replay a captured "
                                                "request.")
    public_url: str | None = Field(None, description="The base URL carriers reach this server "
                                   "at, e.g. https://ivr.example.com (behind a TLS proxy). "
                                   "Twilio's signature is checked against it and the stream "
                                   "URL is built from it (https -> wss). None: taken from each "
                                   "request, which is wrong behind a proxy.")
    stream_token_ttl_s: float = Field(30.0, gt=0, description="How long after the webhook the "
                                      "stream may connect with its token (once).")
    start_timeout_s: float = Field(10.0, gt=0, description="A stream that sends no 'start' "
                                   "this long after it connects is closed.")
    inbox_frames: int = Field(50, ge=5, description="Caller frames queued between the socket "
                              "and the pipeline; beyond it the oldest are dropped and counted.")
    mark_wait_s: float = Field(3.0, ge=0, description="On hang-up, how long to wait for the "
                               "carrier to report our last audio played (its 'mark') before "
                               "closing.")
    max_bad_messages: int = Field(50, ge=1, description="Malformed messages in a row after "
                                  "which the stream is closed (each is logged and counted).")


class InferenceSettings(Section):
    """`ivr inference`, the one process per host that owns the ASR, TTS and embedding models,
    and what a worker using it (``models.inference_url``) does when it is unreachable."""

    bind: str = Field("unix:var/inference.sock", description="gRPC address the tier listens "
                      "on: 'unix:PATH' (a local socket: only processes of this host, with the "
                      "file's permissions) or 'HOST:PORT'. Workers set models.inference_url to "
                      "the same.")
    max_audio_s: float = Field(30.0, gt=0, description="Longest ASR request accepted (Whisper's "
                               "window); a larger buffer is refused with a clear error rather "
                               "than tying up the model.")
    max_text_chars: int = Field(2000, ge=1, description="Longest TTS request (one reply).")
    max_embed_texts: int = Field(4096, ge=1, description="Most texts in one embedding request "
                                 "(a menu's training examples at start-up).")
    outage_s: float = Field(6.0, gt=0, description="How long a call waits for an unreachable "
                            "tier to come back, saying the acknowledgement meanwhile, before the "
                            "caller is told and offered a human. Longer rides over a tier "
                            "restart (model loading takes seconds); shorter hands the caller "
                            "over sooner.")
    outage_message: str = Field("I'm sorry, I'm having trouble on our side. Let me put you "
                                "through to a colleague.", description="Said when the tier "
                                "stays down past outage_s (from audio kept in the worker).")
    outage_queue: str = Field("general", description="Human queue the caller is handed to when "
                              "the tier stays down.")
    client_threads: int = Field(8, ge=1, description="Requests one worker has in flight at "
                                "once (each waits on the socket, not the CPU).")
    connect_wait_s: float = Field(180.0, ge=0, description="How long a starting worker waits "
                                  "for the tier to answer before it gives up (the intent "
                                  "classifier is trained on the tier's embeddings at start-up, "
                                  "and a tier started at the same time is still loading its "
                                  "models: 20-40 s on a busy 2-core machine).")


# Old name -> new name of settings that moved (the call core owns what is not SIP's).
RENAMED = {f"sip.{key}": f"call.{key}" for key in
           ("max_call_s", "max_silence_s", "goodbye_silence", "goodbye_max_duration")}


class IvrSettings(BaseSettings):
    """Everything configurable, validated at start-up."""

    model_config = SettingsConfigDict(env_prefix="IVR_", env_nested_delimiter="__",
                                      extra="forbid")

    models: ModelSettings = Field(default_factory=ModelSettings)
    audio: AudioSettings = Field(default_factory=AudioSettings)
    vad: VadSettings = Field(default_factory=VadSettings)
    turn: TurnSettings = Field(default_factory=TurnSettings)
    barge_in: BargeInSettings = Field(default_factory=BargeInSettings)
    asr: AsrSettings = Field(default_factory=AsrSettings)
    tts: TtsSettings = Field(default_factory=TtsSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    call: CallSettings = Field(default_factory=CallSettings)
    sip: SipSettings = Field(default_factory=SipSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    handoff: HandoffSettings = Field(default_factory=HandoffSettings)
    flows: FlowSettings = Field(default_factory=FlowSettings)
    carrier: CarrierSettings = Field(default_factory=CarrierSettings)
    webrtc: WebRtcSettings = Field(default_factory=WebRtcSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    livekit: LiveKitSettings = Field(default_factory=LiveKitSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)

    @model_validator(mode="after")
    def _check_batching(self) -> IvrSettings:
        if self.asr.batch_window_ms >= self.budget.asr_ms:
            raise ValueError(f"asr.batch_window_ms ({self.asr.batch_window_ms:g}) must be below "
                             f"budget.asr_ms ({self.budget.asr_ms:g}): a batch never waits past "
                             "a turn's ASR budget")
        return self

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, values: Any) -> Any:
        """Settings that moved keep working under their old names (YAML and IVR_* variables),
        with a warning that names the new one."""
        if not isinstance(values, dict):
            return values
        for old, new in RENAMED.items():
            section, _, key = old.partition(".")
            old_section = values.get(section)
            if isinstance(old_section, dict) and key in old_section:
                new_section, _, new_key = new.partition(".")
                value = old_section.pop(key)
                target = values.setdefault(new_section, {})
                if isinstance(target, dict):
                    target.setdefault(new_key, value)
                warnings.warn(f"setting {old} is now {new}", DeprecationWarning, stacklevel=2)
        return values

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first so that it overrides the YAML file, which arrives as init values.
        return env_settings, init_settings

    @classmethod
    def load(cls, path: Path | str | None = None, **overrides: Any) -> IvrSettings:
        """Read ``path`` (YAML) if given, apply ``overrides`` on top, then the environment."""
        values: dict[str, Any] = {}
        if path is not None:
            raw = yaml.safe_load(Path(path).read_text()) or {}
            if not isinstance(raw, dict):
                raise ValueError(f"{path}: the settings file must be a YAML mapping")
            values = raw
        for dotted, value in overrides.items():
            section, _, key = dotted.partition("__")
            values.setdefault(section, {})[key] = value
        return cls(**values)
