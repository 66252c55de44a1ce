"""What the ImageNet CNN extractors (efficientnet, inception_v3) share.

A subclass provides ``preprocess(frames) -> tensor``, ``_features(x)`` (the
extractor's per-frame features) and ``_logits(x)`` (ImageNet logits); this mixin
turns them into ``features``/``classify`` on images and ``frame_step`` on a prepared batch
(``extract`` on a video is ``per_frame`` over it; the stage batches across videos).
In ``extract`` the preprocessing is the extractor's ``prepare_frames``, so in the
features stage it runs in the frame prefetch thread, beside the model.
torch is imported only when they run, so registering the extractors stays cheap.
"""

from __future__ import annotations

import numpy as np



# frames per forward call on the CPU: EfficientNet-Lite0 ran 15-20 ms a frame in calls of
# 1-8 frames and 27-32 ms in calls of 32 here (2 cores, 2 MiB L2 each: a big batch's
# activations leave the cache), Inception-v3 80-90 ms whatever the call; a frame's
# features are the same in any call (tests/features/test_batching.py)
CPU_FORWARD_FRAMES = 8


class ImageModelMixin:
    # the network runs on the job's device (GPU when one is visible); listed before
    # FeatureExtractor in the bases, so this wins over its False
    uses_torch = True

    def _batch(self, images):
        import torch

        if isinstance(images, np.ndarray) and images.ndim == 4:
            return self.preprocess(images)
        return torch.cat([self.preprocess(np.asarray(im)[None]) for im in images])

    def features(self, images) -> np.ndarray:
        """The extractor's features (B, dim) of uint8 RGB images (an array (B, H, W, 3) or a list)."""
        from evoke.features import _torch as T

        self.ensure_loaded()
        with T.inference(self._device, self.config.amp):
            return self._features(self._batch(images)).cpu().numpy()

    def classify(self, images) -> np.ndarray:
        """ImageNet logits (B, 1000) of uint8 RGB images (an array (B, H, W, 3) or a list)."""
        from evoke.features import _torch as T

        self.ensure_loaded()
        with T.inference(self._device, self.config.amp):
            return self._logits(self._batch(images)).float().cpu().numpy()

    def prepare_frames(self, frames: np.ndarray):
        from evoke.features import _torch as T

        with T.preprocessing(self._device, self.config.amp):
            return self.preprocess(frames)

    def frame_step(self, batch) -> dict[str, np.ndarray]:
        """The features (B, dim) of a prepared batch (``prepare_frames``; in the features
        stage, of frames of several videos): ``extract`` is ``per_frame`` over these. On
        the CPU the network runs on ``CPU_FORWARD_FRAMES`` frames at a time."""
        from evoke.features import _torch as T

        with T.inference(self._device, self.config.amp):
            if self._device.type != "cpu" or len(batch) <= CPU_FORWARD_FRAMES:
                return {"values": self._features(batch).cpu().numpy()}
            return {"values": np.concatenate([self._features(batch[i:i + CPU_FORWARD_FRAMES]).numpy()
                                              for i in range(0, len(batch), CPU_FORWARD_FRAMES)])}
