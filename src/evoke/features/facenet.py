"""``facenet``: the two largest faces of each 1 Hz frame, each embedded; (2, D) per step.

Detection: MTCNN (P-, R- and O-nets) from ``facenet-pytorch``, whose weights
ship inside its wheel. Install it **without its dependencies** (it pins
torch < 2.3 and numpy < 2, which would downgrade evoke's):
``pip install --no-deps facenet-pytorch==2.6.0`` (it then uses the torch,
torchvision, numpy, Pillow, requests and opencv already installed).
Detections below ``min_probability`` are dropped; the rest are ordered by box
area, largest first; slot 0 holds the largest face, slot 1 the second.

Embedding (``embedder``):

* ``dlib`` (default; its weights ship offline in the ``face-recognition-models``
  package): dlib's ResNet face descriptor, 128-d, after aligning the MTCNN box
  with dlib's 5-point landmark model (what ``face_recognition.face_encodings``
  does with ``model="small"``). Faces of one person lie closer than 0.6
  (Euclidean), dlib's published threshold. Needs ``dlib-bin`` (a binary wheel
  of dlib) and ``face-recognition-models``; evoke reads the model files
  directly, without importing ``face_recognition`` (which needs
  ``setuptools<81`` for ``pkg_resources``).
* ``facenet``: InceptionResnetV1 trained on VGGFace2 (facenet-pytorch's port of
  David Sandberg's 20180402-114759 model), 512-d, L2-normalised, on the 160 x
  160 crop of the box (``margin`` pixels of context in the crop) standardised
  as ``(x - 127.5) / 128``. Its weights ``20180402-114759-vggface2.pt`` do not
  ship in any package: ``evoke weights fetch`` downloads them (from
  facenet-pytorch's GitHub release) where the machine has internet.

Output: ``values`` (T, 2, D) float32, ``mask`` (T, 2): False for an empty slot
(fewer than two faces, no frame), whose values are zeros. Two extra per-step
outputs (``FeatureResult.extras``, stored by the stage beside ``values``):
``face_boxes`` (T, 2, 4) float32, each slot's box ``x1, y1, x2, y2`` in pixels
of the stored frame (x right, y down, clipped to the frame), and
``face_probability`` (T, 2) float32, MTCNN's probability; both zeros where
``mask`` is False.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from evoke.features.base import (
    ExtractorConfig,
    FeatureError,
    FeatureExtractor,
    register_extractor,
)
from evoke.weights import WeightSpec, resolve

log = logging.getLogger(__name__)

FACENET_PYTORCH_HINT = "pip install --no-deps facenet-pytorch==2.6.0"
DLIB_HINT = "pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0"

MTCNN_WEIGHTS = [
    WeightSpec(name=f"mtcnn_{net}", filename=f"{net}.pt", package="facenet_pytorch", resource=f"data/{net}.pt",
               note=f"(ships in the facenet-pytorch wheel: {FACENET_PYTORCH_HINT})")
    for net in ("pnet", "rnet", "onet")
]
DLIB_WEIGHTS = {
    "shape": WeightSpec(name="dlib_shape_predictor_5", filename="shape_predictor_5_face_landmarks.dat",
                        package="face_recognition_models",
                        resource="models/shape_predictor_5_face_landmarks.dat",
                        note=f"(ships in face-recognition-models: {DLIB_HINT})"),
    "resnet": WeightSpec(name="dlib_face_resnet", filename="dlib_face_recognition_resnet_model_v1.dat",
                         package="face_recognition_models",
                         resource="models/dlib_face_recognition_resnet_model_v1.dat",
                         note=f"(ships in face-recognition-models: {DLIB_HINT})"),
}
FACENET_WEIGHTS = WeightSpec(
    name="facenet_vggface2",
    filename="20180402-114759-vggface2.pt",
    url="https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    note="(InceptionResnetV1 VGGFace2 from facenet-pytorch's releases, 107 MB; facenet-pytorch's own "
         "cache is $TORCH_HOME/checkpoints: copy or point features.weights.facenet_vggface2 at it)",
)
EMBED_DIMS = {"dlib": 128, "facenet": 512}


def require_facenet_pytorch():
    try:
        import facenet_pytorch
    except ImportError as exc:
        raise FeatureError(f"MTCNN face detection needs facenet-pytorch: {FACENET_PYTORCH_HINT}") from exc
    return facenet_pytorch


def torch_device(device: str):
    from evoke.features._torch import torch_device as _device

    return _device(device)


class FaceDetector:
    """MTCNN on batches of RGB uint8 frames of one size: per frame an (n, 5) array of
    ``x1, y1, x2, y2, probability``, clipped to the frame, largest box first.

    On the CPU, detection runs with ``cpu_threads`` torch threads (default 1,
    restored afterwards): MTCNN is thousands of tiny operations (one resize per
    candidate box), for which extra threads cost more than they give: on a busy
    2-core machine one thread was 2.7-7x faster (wall clock) than two. Parallelism
    comes from running several videos (worker processes) instead.
    """

    def __init__(self, device: str = "cpu", min_face_size: int = 20,
                 thresholds: tuple = (0.6, 0.7, 0.7), min_probability: float = 0.9, cpu_threads: int = 1):
        facenet_pytorch = require_facenet_pytorch()
        self.min_probability = float(min_probability)
        self.device = torch_device(device)
        self.cpu_threads = int(cpu_threads)
        self.mtcnn = facenet_pytorch.MTCNN(
            keep_all=True, select_largest=True, min_face_size=int(min_face_size),
            thresholds=[float(t) for t in thresholds], post_process=False, device=self.device,
        ).eval()

    def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        import torch

        frames = np.ascontiguousarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        h, w = frames.shape[1:3]
        threads = torch.get_num_threads()
        if self.device.type == "cpu" and self.cpu_threads > 0:
            torch.set_num_threads(self.cpu_threads)
        try:
            boxes, probs = self.mtcnn.detect(frames)
        finally:
            torch.set_num_threads(threads)
        out = []
        for b, p in zip(boxes, probs):
            if b is None or len(b) == 0:
                out.append(np.zeros((0, 5), dtype=np.float32))
                continue
            det = np.concatenate([np.asarray(b, dtype=np.float64),
                                  np.asarray(p, dtype=np.float64).reshape(-1, 1)], axis=1)
            det[:, [0, 2]] = det[:, [0, 2]].clip(0, w)
            det[:, [1, 3]] = det[:, [1, 3]].clip(0, h)
            area = (det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1])
            det = det[(det[:, 4] >= self.min_probability) & (area > 0)]
            order = np.argsort(-((det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1])), kind="stable")
            out.append(det[order].astype(np.float32))
        return out


class DlibEmbedder:
    """dlib's ResNet descriptor (128-d) of faces given by boxes, aligned with the 5-point model."""

    dim = 128

    def __init__(self, shape_path, resnet_path, num_jitters: int = 1):
        try:
            import dlib
        except ImportError as exc:
            raise FeatureError(f"the dlib face embedder needs dlib: {DLIB_HINT}") from exc
        self._dlib = dlib
        self.shape_predictor = dlib.shape_predictor(str(shape_path))
        self.encoder = dlib.face_recognition_model_v1(str(resnet_path))
        self.num_jitters = int(num_jitters)

    def __call__(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        dlib = self._dlib
        img = np.ascontiguousarray(frame, dtype=np.uint8)
        shapes = dlib.full_object_detections()
        for x1, y1, x2, y2 in boxes[:, :4]:
            rect = dlib.rectangle(int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2)))
            shapes.append(self.shape_predictor(img, rect))
        desc = self.encoder.compute_face_descriptor(img, shapes, self.num_jitters)
        return np.array([np.asarray(d) for d in desc], dtype=np.float32).reshape(len(boxes), self.dim)

    def embed_frames(self, items: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        return [self(frame, boxes) for frame, boxes in items]


class FaceNetEmbedder:
    """InceptionResnetV1 (facenet-pytorch) on 160 px crops: 512-d, L2-normalised."""

    dim = 512

    def __init__(self, weights_path, device: str = "cpu", margin: int = 0):
        from evoke.features._torch import load_checkpoint, read_state_dict

        facenet_pytorch = require_facenet_pytorch()
        net = facenet_pytorch.InceptionResnetV1(pretrained=None, classify=False)
        state = read_state_dict(weights_path)
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}  # the VGGFace2 classifier
        load_checkpoint(net, weights_path, "InceptionResnetV1", state_dict=state)
        self.device = torch_device(device)
        self.net = net.eval().to(self.device)
        self.margin = int(margin)
        self._extract_face = facenet_pytorch.extract_face
        self._standardise = facenet_pytorch.fixed_image_standardization

    def crops(self, frame: np.ndarray, boxes: np.ndarray):
        import torch

        return torch.stack([self._standardise(self._extract_face(frame, b[:4], 160, self.margin))
                            for b in boxes])

    def embed(self, crops) -> np.ndarray:
        from evoke.features._torch import inference

        with inference(self.device):
            return self.net(crops.to(self.device)).float().cpu().numpy()

    def __call__(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        return self.embed(self.crops(frame, boxes))

    def embed_frames(self, items: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """One forward pass for the faces of several frames."""
        import torch

        if not items:
            return []
        emb = self.embed(torch.cat([self.crops(frame, boxes) for frame, boxes in items]))
        return np.split(emb, np.cumsum([len(boxes) for _, boxes in items])[:-1])


@dataclass(frozen=True)
class FaceNetConfig(ExtractorConfig):
    """Settings of ``facenet``.

    ``embedder``: ``dlib`` (128-d, offline) or ``facenet`` (InceptionResnetV1
    VGGFace2, 512-d). ``faces``: face slots per step (the two largest).
    ``min_face_size`` (pixels of the stored frame), ``thresholds`` (P/R/O-net)
    and ``min_probability``: MTCNN settings. ``margin``: pixels of context in
    the 160 px facenet crop. ``num_jitters``: dlib's resampling count (1 = none).
    ``batch_size``: frames per MTCNN batch.
    """

    embedder: str = "dlib"
    faces: int = 2
    min_face_size: int = 20
    thresholds: tuple = (0.6, 0.7, 0.7)
    min_probability: float = 0.9
    margin: int = 0
    num_jitters: int = 1
    batch_size: int = 16

    def __post_init__(self):
        if self.embedder not in EMBED_DIMS:
            raise ValueError(f"embedder must be one of {', '.join(EMBED_DIMS)}, not {self.embedder!r}")
        if self.faces < 1 or self.batch_size < 1 or self.num_jitters < 1:
            raise ValueError("faces, batch_size and num_jitters must be >= 1")
        if len(self.thresholds) != 3:
            raise ValueError("thresholds must have 3 values (P-, R-, O-net)")


@register_extractor
class FaceNet(FeatureExtractor):
    name = "facenet"
    config_type = FaceNetConfig
    modality = "frames"
    description = "MTCNN faces, the two largest embedded (dlib 128-d offline, or FaceNet VGGFace2 512-d)"
    uses_torch = True  # MTCNN (and InceptionResnetV1) run on the job's device

    @property
    def step_shape(self) -> tuple[int, ...]:
        return (self.config.faces, EMBED_DIMS[self.config.embedder])

    @property
    def dim_names(self) -> tuple[str, ...]:
        """Names of the last axis (each face slot's embedding: dlib_000 .. or facenet_000 ..);
        the axis before it is the face slot (0: the largest face)."""
        return tuple(f"{self.config.embedder}_{i:03d}" for i in range(EMBED_DIMS[self.config.embedder]))

    def weights(self) -> list:
        specs = list(MTCNN_WEIGHTS)
        if self.config.embedder == "dlib":
            specs += [DLIB_WEIGHTS["shape"], DLIB_WEIGHTS["resnet"]]
        else:
            specs.append(FACENET_WEIGHTS)
        return specs

    def load(self) -> None:
        cfg = self.config
        require_facenet_pytorch()
        if cfg.embedder == "dlib":
            self._embedder = DlibEmbedder(resolve(DLIB_WEIGHTS["shape"], self.weights_paths),
                                          resolve(DLIB_WEIGHTS["resnet"], self.weights_paths), cfg.num_jitters)
        else:
            self._embedder = FaceNetEmbedder(resolve(FACENET_WEIGHTS, self.weights_paths), self.device, cfg.margin)
        self._detector = FaceDetector(self.device, cfg.min_face_size, cfg.thresholds, cfg.min_probability)

    def frame_outputs(self) -> dict:
        F = self.config.faces
        return {"values": (tuple(self.step_shape), np.float32), "mask": ((F,), bool),
                "face_boxes": ((F, 4), np.float32), "face_probability": ((F,), np.float32)}

    def frame_step(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The faces of a (B, H, W, 3) uint8 batch of one size (in the features stage, frames
        of several videos): ``values`` (B, F, D), ``mask`` (B, F), ``face_boxes`` (B, F, 4),
        ``face_probability`` (B, F); ``extract`` is ``per_frame`` over these."""
        B, (F, D) = len(batch), self.step_shape
        values = np.zeros((B, F, D), dtype=np.float32)
        mask = np.zeros((B, F), dtype=bool)
        boxes = np.zeros((B, F, 5), dtype=np.float32)  # x1, y1, x2, y2, probability
        found = [(i, frame, det[:F]) for i, (frame, det) in enumerate(zip(batch, self._detector.detect(batch)))
                 if len(det)]
        embeddings = self._embedder.embed_frames([(frame, det) for _, frame, det in found])
        for (i, _, det), emb in zip(found, embeddings):
            values[i, :len(det)] = emb
            mask[i, :len(det)] = True
            boxes[i, :len(det)] = det
        return {"values": values, "mask": mask, "face_boxes": boxes[..., :4], "face_probability": boxes[..., 4]}
