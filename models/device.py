"""Where inference runs: CUDA float16 when a GPU is present, CPU int8 otherwise."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cuda" or "cpu"
    compute_type: str  # CTranslate2 compute type
    reason: str


def cuda_device_count() -> int:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count()
    except Exception:  # no CUDA runtime at all: a CPU host
        return 0


def choose_device(preference: str = "auto", compute_type: str | None = None) -> DeviceChoice:
    """``preference`` is auto, cpu or cuda; ``compute_type`` None picks the device's default."""
    if preference not in ("auto", "cpu", "cuda"):
        raise ValueError(f"models.device must be auto, cpu or cuda, not {preference!r}")
    gpus = cuda_device_count()
    if preference == "cuda" and gpus == 0:
        raise RuntimeError("models.device is cuda but CTranslate2 sees no CUDA device")
    if preference == "cuda" or (preference == "auto" and gpus > 0):
        return DeviceChoice("cuda", compute_type or "float16", f"{gpus} CUDA device(s)")
    reason = "configured" if preference == "cpu" else "no CUDA device"
    return DeviceChoice("cpu", compute_type or "int8", reason)
