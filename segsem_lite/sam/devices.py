"""Devices: CUDA, Ascend NPU (torch_npu, imported only when asked for or found), Apple MPS, CPU."""

from __future__ import annotations

import contextlib
import importlib.util

import torch

from ..errors import SegSEMError

__all__ = ["DEVICES", "resolve_device", "autocast", "distributed_backend"]

DEVICES = ("auto", "cpu", "cuda", "npu", "mps")


def _npu_available() -> bool:
    if importlib.util.find_spec("torch_npu") is None:
        return False
    try:
        import torch_npu  # noqa: F401  (registers torch.npu)
    except Exception:
        return False
    return bool(getattr(torch, "npu", None) and torch.npu.is_available())


def resolve_device(device: str = "auto") -> torch.device:
    """The torch device for a name.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "npu", "mps"} or "cuda:1" etc.
        ``auto`` picks CUDA, then an Ascend NPU (importing ``torch_npu`` only then),
        then MPS, then the CPU.

    Raises
    ------
    SegSEMError
        For an unknown name or a device that is not available here.
    """
    name = str(device)
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise SegSEMError(f"device={device!r}: expected one of {', '.join(DEVICES)}")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _npu_available():
            return torch.device("npu")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise SegSEMError(f"device={device!r}: CUDA is not available on this machine")
    if kind == "npu" and not _npu_available():
        raise SegSEMError(f"device={device!r}: no Ascend NPU here (install the 'npu' extra, torch-npu, "
                          "with the Ascend libraries)")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SegSEMError(f"device={device!r}: MPS is not available on this machine")
    return torch.device(name)


def autocast(device: torch.device):
    """bf16 autocast on devices that support it (CUDA with bf16, NPU); fp32 elsewhere, the CPU included."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "npu":
        return torch.autocast("npu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def distributed_backend(device: torch.device) -> str:
    """The collective backend for data parallel training: gloo (CPU), nccl (CUDA), hccl (NPU)."""
    return {"cuda": "nccl", "npu": "hccl"}.get(device.type, "gloo")
