"""``inception_v3``: ImageNet Inception-v3 pool3 features (2048-d) of each 1 Hz frame at 299 px.

Which weights
-------------
torchvision's ``Inception_V3_Weights.IMAGENET1K_V1``
(``https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth``, not
shipped by any package: ``evoke weights fetch`` downloads it, or point
``features.weights.inception_v3`` at a local copy), in torchvision's
``inception_v3`` architecture. torchvision describes these weights as ported
from Google's TensorFlow release ("google" in the file name); the network
expects inputs scaled to [-1, 1]. torchvision builds the pretrained model with
``transform_input=True``, which turns ImageNet-normalised input back into
``(x/255 - 0.5) / 0.5``; here the model is built with ``transform_input=False``
and fed ``x / 127.5 - 1`` directly, which is the same arithmetic.

How this differs from the YouTube-8M / EEV feature
--------------------------------------------------
YouTube-8M (and EEV, which ships features in the YouTube-8M format) ran
Google's frozen TF graph ``inception-2015-12-05`` (``classify_image_graph_def.pb``,
1008 outputs) on each frame: the graph resizes the whole frame to 299 x 299
(aspect not kept) and scales it by ``(x - 128) / 128``; the feature is its
``pool_3`` (2048-d), then PCA (mean subtracted, projected on the first 1024
eigenvectors, whitened by ``1 / sqrt(eigenvalue + 1e-4)``) and quantised to
8 bits. torchvision's weights are a different port, of a differently trained
Inception-v3 (the 2015 graph and torchvision's weights give different
activations on the same input: pytorch/vision#926, mseitzer/pytorch-fid#16).
**The features are therefore not interchangeable**: a model trained on the
released YouTube-8M/EEV features cannot take these, nor the reverse. With the
optional ``pca`` setting the same PCA and whitening step is applied (see
:func:`convert_yt8m_pca` to turn YouTube-8M's ``yt8m_pca.tgz`` into the
``.npz`` it reads), which gives 1024-d whitened features of the right shape
but, with torchvision's weights, still not YouTube-8M's values; evoke does not
quantise. Reproducing YouTube-8M exactly needs the 2015 graph itself (in its
own TensorFlow environment, DESIGN.md "Dependencies").

Preprocessing
-------------
``resize: squash`` (default): the whole frame resized to 299 x 299 (bilinear,
antialiased), as YouTube-8M's graph did: nothing at the sides of a 16:9 frame
is lost, and it is the framing the YouTube-8M PCA was fitted under.
``resize: center_crop``: the short side scaled to 299 and the central
299 x 299 kept (no aspect distortion; ImageNet-style framing).

Output: (T, 2048) float32 (or (T, k) with a PCA of k components), zeros and
mask False where the frame is missing. ``classify(images)`` gives the ImageNet
logits (1000) on the same preprocessing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
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

INCEPTION_URL = "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"
INPUT_SIZE = 299
POOL3_DIM = 2048
YT8M_WHITEN_EPS = 1e-4


@dataclass(frozen=True)
class InceptionV3Config(ExtractorConfig):
    """``batch_size``: frames per forward pass; ``resize``: squash | center_crop (module
    docstring); ``pca``: optional ``.npz`` with ``mean`` (2048,), ``components`` (k, 2048)
    and optionally ``eigenvals`` (k,) (whitening) and ``eps``;
    ``amp``: autocast on CUDA: auto (fp16) | fp16 | bf16 | off (ignored on the CPU; ``_torch.amp_dtype``)."""

    batch_size: int = 32
    resize: str = "squash"
    pca: str | None = None
    amp: bool | str = "auto"

    def __post_init__(self):
        check_amp(self.amp)
        if self.resize not in ("squash", "center_crop"):
            raise ValueError(f"resize must be squash or center_crop, not {self.resize!r}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, not {self.batch_size}")


def read_pca(path: str | Path) -> dict[str, np.ndarray]:
    """The PCA ``.npz`` of :class:`InceptionV3Config` as float32 arrays (checked)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FeatureError(f"inception_v3: PCA file {path} does not exist")
    try:
        with np.load(path) as z:
            data = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError) as exc:
        raise FeatureError(f"{path}: not a readable .npz: {exc}") from exc
    if "mean" not in data or "components" not in data:
        raise FeatureError(f"{path}: a PCA .npz needs 'mean' and 'components' (has {', '.join(data)})")
    mean = data["mean"].reshape(-1).astype(np.float32)
    comps = data["components"].astype(np.float32)
    if mean.shape != (POOL3_DIM,) or comps.ndim != 2 or comps.shape[1] != POOL3_DIM:
        raise FeatureError(f"{path}: expected mean (2048,) and components (k, 2048), "
                           f"got {data['mean'].shape} and {data['components'].shape}")
    out = {"mean": mean, "components": comps}
    if "eigenvals" in data:
        ev = data["eigenvals"].reshape(-1).astype(np.float32)
        if ev.shape != (comps.shape[0],):
            raise FeatureError(f"{path}: eigenvals has {ev.shape[0]} values for {comps.shape[0]} components")
        eps = float(data["eps"]) if "eps" in data else YT8M_WHITEN_EPS
        out["scale"] = (1.0 / np.sqrt(ev + eps)).astype(np.float32)
    return out


def convert_yt8m_pca(folder: str | Path, dest: str | Path, n_components: int = 1024) -> Path:
    """Write YouTube-8M's PCA (``mean.npy``, ``eigenvals.npy``, ``eigenvecs.npy`` from
    ``yt8m_pca.tgz``) as the ``.npz`` the ``pca`` setting reads, keeping the exact
    arithmetic of YouTube-8M's ``feature_extractor.py``: ``(x - mean) @ eigenvecs.T[:, :k]
    / sqrt(eigenvals[:k] + 1e-4)``."""
    folder = Path(folder)
    mean = np.load(folder / "mean.npy")[:, 0]
    eigenvals = np.load(folder / "eigenvals.npy")[:n_components, 0]
    eigenvecs = np.load(folder / "eigenvecs.npy")  # rows are eigenvectors
    dest = Path(dest)
    np.savez(dest, mean=mean.astype(np.float32), components=eigenvecs[:n_components].astype(np.float32),
             eigenvals=eigenvals.astype(np.float32), eps=np.float64(YT8M_WHITEN_EPS))
    return dest


@register_extractor
class InceptionV3Extractor(ImageModelMixin, FeatureExtractor):
    name: ClassVar[str] = "inception_v3"
    config_type = InceptionV3Config
    modality = "frames"
    description = "ImageNet Inception-v3 pool3 (2048-d, 299 px; torchvision weights, optional PCA)"
    config: InceptionV3Config

    @property
    def step_shape(self) -> tuple[int, ...]:
        if self.config.pca:
            return (self._pca()["components"].shape[0],)
        return (POOL3_DIM,)

    @property
    def dim_names(self) -> tuple[str, ...]:
        """pool3_0000 .. pool3_2047, or pca_0000 .. after the optional PCA."""
        prefix = "pca" if self.config.pca else "pool3"
        return tuple(f"{prefix}_{i:04d}" for i in range(self.step_shape[0]))

    def _pca(self) -> dict[str, np.ndarray]:
        if getattr(self, "_pca_cache", None) is None:
            self._pca_cache = read_pca(self.config.pca)
        return self._pca_cache

    def weights(self) -> list[WeightSpec]:
        return [WeightSpec(
            name="inception_v3", filename=INCEPTION_URL.rsplit("/", 1)[-1], url=INCEPTION_URL,
            note="torchvision Inception_V3_Weights.IMAGENET1K_V1 (not the YouTube-8M TF graph; "
                 "see evoke.features.inception).",
        )]

    def weights_identity(self) -> str:
        ident = super().weights_identity()
        if self.config.pca:
            p = Path(self.config.pca).expanduser()
            digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.is_file() else "missing"
            ident += f";pca:{digest}"
        return ident

    # -- loading ------------------------------------------------------------
    def load(self) -> None:
        import torch
        import torch.nn as nn
        import torchvision

        from evoke.features import _torch as T

        self._device = T.torch_device(self.device)
        path = resolve(self.weights()[0], self.weights_paths)
        model = torchvision.models.inception_v3(
            weights=None, aux_logits=True, transform_input=False, init_weights=False, num_classes=1000,
        )
        T.load_checkpoint(model, path, "torchvision inception_v3")
        self._head = model.fc.eval().to(self._device)
        model.fc = nn.Identity()  # forward now ends at pool3 (avgpool, dropout (eval: none), flatten)
        self._model = model.eval().to(self._device)
        self._pca_t = None
        if self.config.pca:
            pca = self._pca()
            self._pca_t = {k: torch.from_numpy(v).to(self._device) for k, v in pca.items()}

    # -- computing ------------------------------------------------------------
    def preprocess(self, frames: np.ndarray):
        """(B, H, W, 3) uint8 frames of one size -> (B, 3, 299, 299) in [-1, 1] on the device."""
        from evoke.features import _torch as T

        x = T.frames_to_tensor(frames, self._device).float()
        if self.config.resize == "squash":
            x = T.resize_exact(x, (INPUT_SIZE, INPUT_SIZE))
        else:
            x = T.center_crop(T.resize_short_side(x, INPUT_SIZE), INPUT_SIZE)
        return x / 127.5 - 1.0

    def _pool3(self, x):
        return self._model(x).float()

    def _features(self, x):
        f = self._pool3(x)
        if self._pca_t is not None:
            f = (f - self._pca_t["mean"]) @ self._pca_t["components"].T
            if "scale" in self._pca_t:
                f = f * self._pca_t["scale"]
        return f

    def _logits(self, x):
        return self._head(self._pool3(x))
