"""``vggish``: AudioSet VGGish embeddings, 128-d per second.

Front end: the AudioSet log-mel computation of :mod:`evoke.features._audio`
(16 kHz mono, 25 ms periodic-Hann frames every 10 ms, FFT 512, 64 HTK mel bands
125-7500 Hz, ``log(mel + 0.01)``, 96 x 64 examples of 0.96 s). Example ``k``
starts at ``t_k`` (frame ``100 t_k``): on the 1 Hz grid, one example per second,
covering [k, k + 0.96) s. A step whose 0.96 s does not fit in the audio (the
last partial second, audio shorter than 0.96 s, no audio at all) is masked and
its values are zeros.

Network (``backend: torch``, the default): VGGish as in ``vggish_slim.py``:
conv64-pool-conv128-pool-conv256x2-pool-conv512x2-pool (3x3 convolutions, ReLU,
2x2 max-pools), flatten in TensorFlow's (height, width, channel) order, fc
4096-4096-128. The weights are the converted AudioSet checkpoint of the common
PyTorch port (harritaylor/torchvggish, release v0.1: ``vggish-10086976.pth``,
state-dict keys ``features.{0,3,6,8,11,13}`` and ``embeddings.{0,2,4}``).

*Final ReLU.* The TensorFlow reference (``vggish_slim.py``: ``fc2`` with
``activation_fn=None``; its README: "the embedding value is pre-activation")
and the TF-Hub model output the 128-d layer *before* any activation; the
torchvggish port adds a ReLU there (the 2017 slim definition had one). The
weights are the same. ``final_relu: false`` (default) gives the reference's
embeddings; ``true`` reproduces torchvggish.

*Postprocessing* (``postprocess: true``): the PCA + whitening and 8-bit
quantisation with which the AudioSet embeddings (and YouTube-8M's audio
features) were released: ``q = round((clip(P (e - mu), -2, 2) + 2) * 255 / 4)``,
values 0..255 stored as float32. It needs ``vggish_pca_params-970ea276.pth``
(torchvggish) or Google's ``vggish_pca_params.npz`` via
``features.weights.vggish_pca``.

``backend: tfhub`` runs the official TF-Hub model (``google/vggish/1``) in its
own Python environment (``tfhub_python``, e.g. the env of ``envs/tfhub.yaml``)
as a separate process, ``scripts/vggish_tfhub.py``; TensorFlow is never
imported here. TF-Hub's model computes its log-mel features with ``tf.signal``
(YAMNet's front end with VGGish parameters), so its numbers differ slightly
from the NumPy reference front end.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from evoke.features import _audio
from evoke.features.base import (
    ExtractorConfig,
    FeatureError,
    FeatureExtractor,
    FeatureResult,
    VideoInput,
    check_amp,
    register_extractor,
)
from evoke.weights import WeightSpec, resolve

log = logging.getLogger(__name__)

EMBEDDING_SIZE = 128
QUANTIZE_MIN, QUANTIZE_MAX = -2.0, 2.0

VGGISH_WEIGHTS = WeightSpec(
    name="vggish",
    filename="vggish-10086976.pth",
    url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
    note="(AudioSet VGGish converted to PyTorch by harritaylor/torchvggish, 277 MB)",
)
PCA_WEIGHTS = WeightSpec(
    name="vggish_pca",
    filename="vggish_pca_params-970ea276.pth",
    url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish_pca_params-970ea276.pth",
    note="(AudioSet PCA parameters; Google's vggish_pca_params.npz works too)",
)


@dataclass(frozen=True)
class VGGishConfig(ExtractorConfig):
    """Settings of ``vggish``.

    ``backend``: ``torch`` (PyTorch port, default) or ``tfhub`` (official TF-Hub
    model in a separate process). ``postprocess``: AudioSet PCA/whitening +
    8-bit quantisation (values 0..255). ``final_relu``: ReLU on the 128-d layer
    (torchvggish's output) instead of the reference's pre-activation.
    ``batch_size``: examples per forward pass. ``tfhub_python``: the Python of
    the TensorFlow environment; ``tfhub_model``: TF-Hub handle or a local
    SavedModel directory; ``tfhub_script``: path of ``vggish_tfhub.py`` (empty:
    ``scripts/vggish_tfhub.py`` of this checkout); ``tfhub_timeout_s``: per video.
    ``amp``: autocast on CUDA: auto (fp16) | fp16 | bf16 | off (ignored on the CPU; ``_torch.amp_dtype``) (torch backend).
    """

    backend: str = "torch"
    postprocess: bool = False
    final_relu: bool = False
    batch_size: int = 64
    tfhub_python: str = "python"
    tfhub_model: str = "https://tfhub.dev/google/vggish/1"
    tfhub_script: str = ""
    tfhub_timeout_s: float = 3600.0
    amp: bool | str = "auto"

    def __post_init__(self):
        check_amp(self.amp)
        if self.backend not in ("torch", "tfhub"):
            raise ValueError(f"backend must be 'torch' or 'tfhub', not {self.backend!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")


@lru_cache(maxsize=1)
def _network_class():
    import torch
    from torch import nn

    class VGGishNet(nn.Module):
        """VGGish up to the 128-d embedding; input (B, 96, 64) log-mel examples."""

        def __init__(self, final_relu: bool = False):
            super().__init__()
            layers, channels = [], 1
            for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
                if v == "M":
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                else:
                    layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                    channels = v
            self.features = nn.Sequential(*layers)
            head = [nn.Linear(512 * 6 * 4, 4096), nn.ReLU(inplace=True),
                    nn.Linear(4096, 4096), nn.ReLU(inplace=True),
                    nn.Linear(4096, EMBEDDING_SIZE)]
            if final_relu:
                head.append(nn.ReLU(inplace=True))
            self.embeddings = nn.Sequential(*head)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.features(x.unsqueeze(1))  # (B, 512, 6, 4)
            # flatten as TensorFlow does (NHWC), the order fc1's weights expect
            x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
            return self.embeddings(x)

    return VGGishNet


def build_network(final_relu: bool = False):
    """A randomly initialised VGGish (its state dict has the torchvggish layout)."""
    return _network_class()(final_relu=final_relu)


def load_pca_params(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(eigenvectors (128, 128), means (128,)) from torchvggish's .pth or Google's .npz."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path) as data:
                params = {k: data[k] for k in data.files}
        else:
            params = _torch_load_numpy_ok(path)
        matrix = np.asarray(_as_numpy(params["pca_eigen_vectors"]), dtype=np.float64)
        means = np.asarray(_as_numpy(params["pca_means"]), dtype=np.float64).reshape(-1)
    except (KeyError, OSError, RuntimeError, ValueError, TypeError) as exc:
        raise FeatureError(f"{path}: not VGGish PCA parameters ({exc})") from exc
    if matrix.shape != (EMBEDDING_SIZE, EMBEDDING_SIZE) or means.shape != (EMBEDDING_SIZE,):
        raise FeatureError(f"{path}: PCA parameters of shape {matrix.shape}/{means.shape}, expected 128x128/128")
    return matrix, means


def _as_numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else x


def _torch_load_numpy_ok(path: Path):
    """torch.load with weights_only, allowing the plain NumPy arrays torchvggish pickled."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001  (an UnpicklingError naming a NumPy global)
        allowed = [np.ndarray, np.dtype]
        core = getattr(np, "_core", None) or np.core
        allowed.append(core.multiarray._reconstruct)
        allowed += [type(np.dtype(t)) for t in ("float32", "float64", "int64")]
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)


def postprocess_embeddings(emb: np.ndarray, matrix: np.ndarray, means: np.ndarray) -> np.ndarray:
    """AudioSet postprocessing: PCA + whitening, clip to [-2, 2], quantise to 0..255 (float)."""
    pca = (np.asarray(emb, dtype=np.float64) - means) @ matrix.T
    clipped = np.clip(pca, QUANTIZE_MIN, QUANTIZE_MAX)
    return np.round((clipped - QUANTIZE_MIN) * (255.0 / (QUANTIZE_MAX - QUANTIZE_MIN))).astype(np.float32)


def default_tfhub_script() -> Path:
    """``scripts/vggish_tfhub.py`` of the checkout this package runs from."""
    return Path(__file__).resolve().parents[3] / "scripts" / "vggish_tfhub.py"


@register_extractor
class VGGish(FeatureExtractor):
    name = "vggish"
    config_type = VGGishConfig
    modality = "audio"
    description = "AudioSet VGGish embedding of [t, t+0.96) s, 128-d (PyTorch port or TF-Hub)"
    uses_torch = True

    @property
    def step_shape(self) -> tuple[int, ...]:
        return (EMBEDDING_SIZE,)

    @property
    def dim_names(self) -> tuple[str, ...]:
        """vggish_000 .. vggish_127 (the AudioSet embedding, PCA-whitened and quantised with
        postprocess: true)."""
        return tuple(f"vggish_{i:03d}" for i in range(EMBEDDING_SIZE))

    def weights(self) -> list:
        specs = [VGGISH_WEIGHTS] if self.config.backend == "torch" else []
        if self.config.postprocess:
            specs.append(PCA_WEIGHTS)
        return specs

    def load(self) -> None:
        cfg = self.config
        self._pca = None
        if cfg.postprocess:
            self._pca = load_pca_params(resolve(PCA_WEIGHTS, self.weights_paths))
        if cfg.backend == "torch":
            from evoke.features._torch import load_checkpoint, read_state_dict, torch_device

            path = resolve(VGGISH_WEIGHTS, self.weights_paths)
            state = read_state_dict(path)  # an unreadable file fails before the network is built
            net = build_network(cfg.final_relu)
            load_checkpoint(net, path, "VGGish (torchvggish layout)", state_dict=state)
            self._dev = torch_device(self.device)
            self._net = net.eval().to(self._dev)
        else:
            script = Path(cfg.tfhub_script) if cfg.tfhub_script else default_tfhub_script()
            if not script.is_file():
                raise FeatureError(f"vggish (tfhub): {script} not found; set features.vggish.tfhub_script")
            self._script = script

    # -- running ----------------------------------------------------------
    def embed_examples(self, examples: np.ndarray) -> np.ndarray:
        """(B, 96, 64) log-mel examples to (B, 128) embeddings (torch backend, before postprocessing)."""
        import torch

        from evoke.features._torch import inference

        self.ensure_loaded()
        out = np.zeros((len(examples), EMBEDDING_SIZE), dtype=np.float32)
        with inference(self._dev, self.config.amp):
            for i in range(0, len(examples), self.config.batch_size):
                x = torch.as_tensor(np.asarray(examples[i:i + self.config.batch_size], dtype=np.float32),
                                    device=self._dev)
                out[i:i + len(x)] = self._net(x).float().cpu().numpy()
        return out

    def inputs(self, video: VideoInput):
        """The front end, which the features stage runs ahead of the network: first the
        video's :class:`~evoke.features._audio.StepWindows`, then (torch backend) blocks of
        (step indices (B,), log-mel examples (B, 96, 64)) of ``batch_size`` full steps."""
        # a step needs its whole 0.96 s example (15,600 samples): no partial windows
        windows = _audio.step_windows(video.audio_path, video.timestamps_s,
                                      window=_audio.EXAMPLE_SAMPLES, min_samples=_audio.EXAMPLE_SAMPLES)
        yield windows
        if self.config.backend == "torch":
            for block in _audio.step_blocks(windows.full_steps, self.config.batch_size):
                yield block, _audio.log_mel(windows.samples(block))

    def extract(self, video: VideoInput) -> FeatureResult:
        self.ensure_loaded()
        items = self.read_inputs(video)
        windows = next(items)
        values = np.zeros((video.n_steps, EMBEDDING_SIZE), dtype=np.float32)
        for block, examples in items:  # torch backend
            values[block] = self.embed_examples(examples)
        idx = windows.full_steps
        if idx.size == 0:
            return FeatureResult(values, windows.valid)
        if self.config.backend == "tfhub":
            values[idx] = self._run_tfhub(Path(video.audio_path), windows.starts[idx])
        if self._pca is not None:
            values[idx] = postprocess_embeddings(values[idx], *self._pca)
        return FeatureResult(values, windows.valid)

    def _run_tfhub(self, wav: Path, starts: np.ndarray) -> np.ndarray:
        cfg = self.config
        with tempfile.TemporaryDirectory(prefix="evoke-vggish-") as tmp:
            starts_file, out_file = Path(tmp) / "starts.npy", Path(tmp) / "embeddings.npy"
            np.save(starts_file, starts.astype(np.int64))
            cmd = [cfg.tfhub_python, str(self._script), str(wav), str(out_file),
                   "--starts", str(starts_file), "--model", cfg.tfhub_model]
            env = dict(os.environ)
            env.pop("PYTHONPATH", None)  # the TF environment must not see this one's packages
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=cfg.tfhub_timeout_s,
                                      env=env, check=False)
            except FileNotFoundError as exc:
                raise FeatureError(
                    f"vggish (tfhub): Python {cfg.tfhub_python!r} not found; create the TensorFlow "
                    f"environment (envs/tfhub.yaml) and set features.vggish.tfhub_python") from exc
            except subprocess.TimeoutExpired as exc:
                raise FeatureError(f"vggish (tfhub): {wav}: no result within {cfg.tfhub_timeout_s:.0f} s") from exc
            if proc.returncode != 0:
                tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
                raise FeatureError(f"vggish (tfhub): {self._script.name} failed on {wav} "
                                   f"(exit {proc.returncode}): {tail}")
            emb = np.load(out_file)
        if emb.shape != (len(starts), EMBEDDING_SIZE) or not np.isfinite(emb).all():
            raise FeatureError(f"vggish (tfhub): {wav}: got embeddings of shape {emb.shape}, "
                               f"expected {(len(starts), EMBEDDING_SIZE)} finite values")
        return emb.astype(np.float32)
