"""Settings of flow versions and of the spoken regression gate (``flows`` in the IVR settings)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from intents.flows.scoring import Tolerances


class FlowSettings(BaseModel):
    """Where flow bundles live, how a running server follows promotions, and the gate's rules."""

    model_config = ConfigDict(extra="forbid")

    bundles_dir: str = Field("var/flows", description="Folder of stored flow bundles, one "
                             "sub-folder per version (intents/flows/bundle.py).")
    store_url: str | None = Field(None, description="Database of the active version, its audit "
                                  "trail and the eval runs (SQLAlchemy URL). None: the call "
                                  "store's (server.store_url), so every worker sharing it "
                                  "follows the same promotion.")
    poll_s: float = Field(2.0, gt=0, description="How often `ivr serve` checks for a promotion "
                          "or rollback. New calls take the new version; calls in progress "
                          "finish on theirs. Shorter follows sooner at one small query each.")
    eval_jobs: int = Field(2, ge=1, le=8, description="Cohort calls `ivr eval` runs at once. "
                           "Each waits on ASR and TTS in threads: two fill a 2-core machine.")
    tolerances: Tolerances = Field(default_factory=Tolerances)
