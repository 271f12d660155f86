"""Where inference runs: CUDA float16 when a GPU is present, CPU int8 otherwise.

The choice is made once, from CTranslate2 (Whisper is the model that gains most from a GPU).
The other runtimes are asked separately whether they can follow it: a GPU host may well have
the CPU builds of torch and onnxruntime (this project pins CPU torch), and asking those for CUDA
fails or falls back with a warning. ``torch_device`` and ``onnx_uses_cuda`` make that explicit.
"""

from __future__ import annotations

from dataclasses import dataclass

DEVICE_PREFERENCES = ("auto", "cpu", "cuda")
DEFAULT_COMPUTE_TYPE = {"cuda": "float16", "cpu": "int8"}


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cuda" or "cpu"
    compute_type: str  # CTranslate2 compute type
    reason: str  # why, for `ivr models check` and logs


def cuda_device_count() -> int:
    """GPUs CTranslate2 can use; 0 when its CUDA runtime is absent or broken."""
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count()
    except Exception:  # noqa: BLE001 - no CUDA driver or libraries at all: a CPU host
        return 0


def choose_device(preference: str = "auto", compute_type: str | None = None) -> DeviceChoice:
    """``preference`` is auto, cpu or cuda; ``compute_type`` None picks the device's default."""
    if preference not in DEVICE_PREFERENCES:
        raise ValueError(f"models.device must be one of {', '.join(DEVICE_PREFERENCES)}, "
                         f"not {preference!r}")
    if preference == "cpu":
        return DeviceChoice("cpu", compute_type or DEFAULT_COMPUTE_TYPE["cpu"], "configured")
    gpus = cuda_device_count()
    if gpus > 0:
        return DeviceChoice("cuda", compute_type or DEFAULT_COMPUTE_TYPE["cuda"],
                            f"{gpus} CUDA device(s)")
    if preference == "cuda":
        raise RuntimeError("models.device is cuda but CTranslate2 sees no CUDA device")
    return DeviceChoice("cpu", compute_type or DEFAULT_COMPUTE_TYPE["cpu"], "no CUDA device")


def torch_device(choice: DeviceChoice) -> str:
    """The torch device for models that follow ``choice`` (sentence-transformers)."""
    if choice.device != "cuda":
        return "cpu"
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # noqa: BLE001 - torch missing or its CUDA init failing: the CPU still works
        return "cpu"


def onnx_uses_cuda(choice: DeviceChoice) -> bool:
    """Whether ONNX Runtime models (Piper) can follow ``choice`` onto the GPU."""
    if choice.device != "cuda":
        return False
    try:
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except Exception:  # noqa: BLE001 - a failure here must not end the call or the process
        return False
