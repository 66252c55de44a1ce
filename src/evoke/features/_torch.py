"""Shared torch helpers of the CNN extractors (efficientnet, inception_v3, i3d).

Imported lazily by the extractor modules (inside ``load``/``extract``), so
``import evoke.features`` stays free of torch.

* :func:`torch_device`: the extractor's ``device`` string as a ``torch.device``;
* :func:`inference`: ``torch.inference_mode`` plus the numerics policy: on CUDA,
  fp32 convolutions run in IEEE fp32 (torch's default there is TF32, which
  would break "same numbers on CPU and GPU"), or in autocast when the
  extractor's ``amp`` setting asks for it (:func:`amp_dtype`); on the CPU
  ``amp`` is ignored;
  :func:`preprocessing`: its thread-local part, for preprocessing in the frame
  prefetch thread;
* :func:`frames_to_tensor` (uint8 to the device), :func:`resize_short_side`, :func:`resize_exact`,
  :func:`center_crop`, :func:`normalize`: batched preprocessing on the device,
  in float32 on the 0..255 scale;
* :func:`load_checkpoint`: read a state dict (``weights_only``), unwrap the
  usual containers and load it strictly, with a message naming the file when
  it does not fit;
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from evoke.features.base import FeatureError, check_amp

log = logging.getLogger(__name__)


def torch_device(device: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` (or ``"cuda:N"``) or ``"auto"`` as a torch device."""
    if device in (None, "", "auto"):
        from evoke.device import pick_device

        device = pick_device("auto")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FeatureError(f"device {device!r} requested but no GPU is visible (use --device cpu or auto)")
    if dev.type not in ("cpu", "cuda"):
        raise FeatureError(f"device must be cpu, cuda or auto, not {device!r}")
    return dev


@contextlib.contextmanager
def _ieee_fp32_convolutions() -> Iterator[None]:
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        old = conv.fp32_precision
        conv.fp32_precision = "ieee"
        try:
            yield
        finally:
            conv.fp32_precision = old
    else:  # older torch
        old = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32 = old


def amp_dtype(device: torch.device, amp) -> torch.dtype | None:
    """The autocast dtype of an extractor's ``amp`` setting on ``device``; None: fp32.

    The CPU always computes in fp32. On CUDA: ``off``/false: fp32 (IEEE, TF32 off);
    ``fp16``/true: float16; ``bf16``: bfloat16 (an error where the GPU has none);
    ``auto`` (the default): float16. ``auto`` is float16 rather than bfloat16 because
    float16 keeps these networks' features closer to fp32: measured against a float64
    forward on the CPU (``tests/features/test_cpu_gpu.py``'s inputs), autocast to
    float16 is 4.4e-3 (EfficientNet-Lite0), 5.5e-3 (Inception-v3), 3.5e-3 (I3D) and
    8.7e-4 (VGGish) in relative L2 per step, bfloat16 3.2e-2, 1.3e-2, 1.1e-2 and
    7.0e-3, and no activation of these inference networks comes near float16's
    range limit (65504).
    """
    check_amp(amp)
    if device.type != "cuda" or amp is False or amp == "off":
        return None
    if amp == "bf16":
        if not torch.cuda.is_bf16_supported():
            raise FeatureError(f"amp: bf16 asked for, but {torch.cuda.get_device_name(device)} has no bfloat16")
        return torch.bfloat16
    return torch.float16


@contextlib.contextmanager
def preprocessing(device: torch.device, amp="off") -> Iterator[None]:
    """The thread-local part of :func:`inference` (inference mode; autocast on CUDA as
    ``amp`` says, :func:`amp_dtype`): what preprocessing runs under, in any thread. The
    fp32 convolution setting is process-wide, so only the model's thread
    (:func:`inference`) sets it."""
    dtype = amp_dtype(device, amp)
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.inference_mode())
        if dtype is not None:
            stack.enter_context(torch.autocast("cuda", dtype=dtype))
        yield


@contextlib.contextmanager
def inference(device: torch.device, amp="off") -> Iterator[None]:
    """Inference mode with the numerics policy of the module docstring."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(preprocessing(device, amp))
        if device.type == "cuda" and amp_dtype(device, amp) is None:
            stack.enter_context(_ieee_fp32_convolutions())
        yield


# -- preprocessing (float32, 0..255, NCHW) -------------------------------------

def frames_to_tensor(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB -> (B, 3, H, W) uint8 on ``device`` (a view; call ``.float()``).

    The uint8 batch travels to the device (4x less to copy than float) and is
    converted there.
    """
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise FeatureError(f"expected (B, H, W, 3) RGB frames, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise FeatureError(f"expected uint8 frames, got {frames.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(frames))
    if device.type == "cuda":
        t = t.pin_memory().to(device, non_blocking=True)
    return t.permute(0, 3, 1, 2)


def resize_short_side(x: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Scale (B, C, H, W) so its short side is ``size`` (aspect kept; antialiased when shrinking)."""
    h, w = x.shape[-2:]
    s = size / min(h, w)
    out = (max(size, round(h * s)), max(size, round(w * s)))
    return resize_exact(x, out, mode)


def resize_exact(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Scale (B, C, H, W) to exactly ``size`` (H, W); bicubic output is clamped to 0..255."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    y = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=True)
    return y.clamp_(0.0, 255.0) if mode == "bicubic" else y


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` window of (..., H, W) (torchvision's rounding)."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise FeatureError(f"cannot crop {size}x{size} from {h}x{w}")
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return x[..., top:top + size, left:left + size]


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """``(x - mean) / std`` per channel of (B, 3, H, W); mean/std on the 0..255 scale."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


# -- weights -----------------------------------------------------------------

def read_state_dict(path: str | Path) -> dict:
    """A state dict from ``path`` (loaded with ``weights_only=True`` onto the CPU).

    Unwraps ``{"state_dict": ...}`` / ``{"model": ...}`` containers and a
    ``module.`` prefix (checkpoints saved from DataParallel).
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean: not a usable weights file
        raise FeatureError(f"{path}: not a readable PyTorch weights file: {exc}") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise FeatureError(f"{path}: does not hold a state dict of tensors")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def load_checkpoint(model: torch.nn.Module, path: str | Path, what: str,
                    state_dict: dict | None = None) -> None:
    """Load ``path`` (or an already read ``state_dict``) into ``model`` strictly.

    BatchNorm ``num_batches_tracked`` counters missing from old checkpoints
    (saved before PyTorch 0.4.1) are filled in; any other missing or unexpected
    key, or a shape mismatch, is a FeatureError naming the file.
    """
    sd = read_state_dict(path) if state_dict is None else dict(state_dict)
    own = model.state_dict()
    for k, v in own.items():
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = v.clone()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    wrong = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or wrong:
        def few(keys):
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        parts = []
        if missing:
            parts.append(f"missing {few(missing)}")
        if unexpected:
            parts.append(f"unexpected {few(unexpected)}")
        if wrong:
            parts.append(f"wrong shape {few(wrong)}")
        raise FeatureError(f"{path}: does not fit the {what} architecture: " + "; ".join(parts))
    model.load_state_dict(sd, strict=True)
