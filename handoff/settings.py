"""Settings of the handoff side: escalation, transfer targets, context push, storage.

One pydantic section (``handoff`` in the IVR's settings file); unknown keys are refused, and
values that cannot work together fail at start-up with the field named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from intents.dialogue.escalation import EscalationConfig


class HandoffSettings(BaseModel):
    """Warm transfer and context push."""

    model_config = ConfigDict(extra="forbid")

    escalation: EscalationConfig = Field(default_factory=EscalationConfig, description=(
        "When to hand over: default thresholds and per-intent overrides."))
    agent_uris: list[str] = Field(default_factory=list, description=(
        "SIP URIs of the agents (or queues) tried in order, e.g. sip:agent1@pbx.example. "
        "Empty: the IVR cannot transfer and offers a callback instead."))
    transfer_mode: Literal["bridge", "refer"] = Field("bridge", description=(
        "'bridge' keeps both legs on the IVR (works with any trunk, costs media relaying for "
        "the whole call); 'refer' sends REFER with Replaces so the IVR leaves the media path "
        "(needs trunk support)."))
    ring_timeout_s: float = Field(20.0, gt=0, le=120, description=(
        "How long an agent rings before the next is tried. Longer waits for busy agents and "
        "keeps the caller on hold longer."))
    desktop_tokens: list[SecretStr] = Field(default_factory=list, description=(
        "Tokens agents sign in to the desktop (and the handoff API) with. Empty: the desktop "
        "is closed."))
    webhook_urls: list[str] = Field(default_factory=list, description=(
        "URLs the package is POSTed to when a transfer starts (CRM, ticketing, analytics)."))
    webhook_secret: SecretStr = Field(SecretStr(""), description=(
        "Secret of the Standard Webhooks signature (whsec_<base64>, or any string, used as its "
        "bytes); receivers verify with the standardwebhooks library."))
    webhook_attempts: int = Field(4, ge=1, le=20, description=(
        "Tries per URL on connection errors and 5xx. More survives longer outages and keeps "
        "a background task alive longer."))
    webhook_backoff_s: float = Field(0.5, ge=0, description=(
        "Delay before the first retry; doubled each time (0.5, 1, 2 s...)."))
    webhook_timeout_s: float = Field(5.0, gt=0, description=(
        "Per-request timeout. A slow receiver counts as failed and is retried."))
    db_url: str = Field("sqlite:///var/handoffs.sqlite", description=(
        "Where packages and deliveries are kept (SQLAlchemy URL). A PostgreSQL URL shares "
        "them between IVR nodes."))
    spool_dir: Path = Field(Path("var/handoff-spool"), description=(
        "Where writes go when the database fails, as JSON files; replayed by "
        "HandoffStore.recover()."))

    @field_validator("agent_uris")
    @classmethod
    def _sip_uris(cls, uris: list[str]) -> list[str]:
        for uri in uris:
            if not uri.startswith(("sip:", "sips:")):
                raise ValueError(f"agent URI {uri!r} must start with sip: or sips:")
        return uris

    @field_validator("webhook_urls")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"webhook URL {url!r} must start with http:// or https://")
        return urls

    @model_validator(mode="after")
    def _check(self) -> HandoffSettings:
        if self.webhook_urls and not self.webhook_secret.get_secret_value():
            raise ValueError("handoff.webhook_urls are set but handoff.webhook_secret is empty: "
                             "set a shared secret (receivers verify the signature with it)")
        return self
