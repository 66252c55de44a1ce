"""Audio extractors: the AudioSet front end against an independent reference, VGGish's
loading path with random weights, masks for missing/short audio, logmel, eGeMAPS and
the TF-Hub backend's process plumbing (with a stand-in for TensorFlow)."""

from __future__ import annotations

import importlib.util
import stat
import subprocess
import sys
import textwrap
import wave
from pathlib import Path

import numpy as np
import pytest

from evoke.features import VideoInput, create_extractor
from evoke.features import _audio
from evoke.weights import WeightsMissing, find

REPO = Path(__file__).resolve().parents[2]
SR = 16000


def write_wav(path: Path, x: np.ndarray, rate: int = SR) -> Path:
    pcm = np.clip(np.round(np.asarray(x) * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def sine(seconds: float, freq: float = 1000.0, amp: float = 1.0) -> np.ndarray:
    t = np.arange(0, seconds, 1.0 / SR)
    return amp * np.sin(2 * np.pi * freq * t)


def audio_video(wav: Path | None, n_steps: int) -> VideoInput:
    return VideoInput("v", np.arange(n_steps, dtype=np.float64), np.ones(n_steps, bool), float(n_steps),
                      None, wav)


# -- an independent AudioSet front end, written from the reference's formulas -----
def reference_log_mel_examples(x: np.ndarray, example_starts_frames) -> np.ndarray:
    """mel_features.log_mel_spectrogram + framing, computed with explicit loops."""
    win, hop, nfft, bands = 400, 160, 512, 64
    n_frames = 1 + (len(x) - win) // hop
    hann = np.array([0.5 - 0.5 * np.cos(2 * np.pi * n / win) for n in range(win)])  # periodic
    spec = np.empty((n_frames, nfft // 2 + 1))
    for j in range(n_frames):
        spec[j] = np.abs(np.fft.rfft(x[j * hop:j * hop + win] * hann, nfft))

    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    bin_mel = mel(np.linspace(0.0, SR / 2, nfft // 2 + 1))
    edges = np.linspace(mel(125.0), mel(7500.0), bands + 2)
    weights = np.zeros((nfft // 2 + 1, bands))
    for b in range(bands):
        lo, mid, hi = edges[b], edges[b + 1], edges[b + 2]
        for i, m in enumerate(bin_mel):
            if i == 0:
                continue  # HTK: no DC
            if lo < m <= mid:
                weights[i, b] = (m - lo) / (mid - lo)
            elif mid < m < hi:
                weights[i, b] = (hi - m) / (hi - mid)
    logmel = np.log(spec @ weights + 0.01)
    return np.stack([logmel[s:s + 96] for s in example_starts_frames])


def test_frontend_matches_independent_reference_on_a_1khz_sine():
    x = sine(3.0)
    starts = _audio.example_starts(np.arange(3.0))
    assert starts.tolist() == [0, 16000, 32000]
    ours = _audio.waveform_examples(x, starts)
    assert ours.shape == (3, 96, 64)
    ref = reference_log_mel_examples(x, [0, 100, 200])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)
    # the reference's own framing (0.96 s hop) also gives 3 examples on 3 s
    assert _audio.reference_examples(x).shape == (3, 96, 64)
    # 1 kHz lands in the band whose centre is nearest 1 kHz
    centres = 700.0 * (np.exp(np.linspace(1127 * np.log(1 + 125 / 700), 1127 * np.log(1 + 7500 / 700), 66)[1:-1]
                              / 1127.0) - 1.0)
    assert int(ours[0].mean(axis=0).argmax()) == int(np.abs(centres - 1000).argmin())


def test_wav_reading_matches_the_waveform(tmp_path):
    x = 0.5 * sine(2.5, 440.0)
    wav = write_wav(tmp_path / "a.wav", x)
    audio = _audio.open_audio(wav)
    assert audio.n_samples == len(x)
    pcm = np.round(x * 32768.0) / 32768.0
    windows = _audio.step_windows(wav, np.arange(2.0), _audio.EXAMPLE_SAMPLES, _audio.EXAMPLE_SAMPLES)
    np.testing.assert_allclose(_audio.log_mel(windows.samples(np.arange(2))),
                               _audio.waveform_examples(pcm, windows.starts), atol=1e-9)
    assert _audio.open_audio(None) is None
    (tmp_path / "empty.wav").write_bytes(b"")
    assert _audio.open_audio(tmp_path / "empty.wav") is None


# -- the per-step audio windows every audio extractor uses --------------------------
def test_step_windows_on_the_1hz_grid(tmp_path):
    x = 0.5 * sine(2.5, 440.0)  # 40,000 samples: two whole seconds and half of the third
    wav = write_wav(tmp_path / "a.wav", x)
    w = _audio.step_windows(wav, np.arange(4.0), window=SR, min_samples=SR // 4)
    assert w.starts.tolist() == [0, 16000, 32000, 48000]
    assert w.lengths.tolist() == [16000, 16000, 8000, 0]  # the last partial second, then past the end
    assert w.valid.tolist() == [True, True, True, False]
    assert w.full_steps.tolist() == [0, 1] and w.partial_steps.tolist() == [2]
    pcm = np.round(x * 32768.0) / 32768.0
    np.testing.assert_array_equal(w.samples(w.full_steps), np.stack([pcm[:16000], pcm[16000:32000]]))
    np.testing.assert_array_equal(w.step_samples(2), pcm[32000:])
    assert w.samples(np.array([], dtype=np.int64)).shape == (0, SR)
    with pytest.raises(ValueError, match="outside the audio"):
        w.samples(np.array([2]))
    # a whole window required (vggish): the partial second is invalid
    strict = _audio.step_windows(wav, np.arange(4.0), window=SR, min_samples=SR)
    assert strict.valid.tolist() == [True, True, False, False] and strict.partial_steps.size == 0
    # a grid that does not start at 0 s lands on the 10 ms frame grid
    assert _audio.step_windows(wav, np.array([0.504]), SR, SR).starts.tolist() == [8000]


@pytest.mark.parametrize("case", ["none", "empty", "shorter_than_a_window"])
def test_step_windows_without_enough_audio_are_invalid_not_an_error(tmp_path, case):
    wav = {"none": None, "empty": tmp_path / "empty.wav",
           "shorter_than_a_window": tmp_path / "short.wav"}[case]
    if case == "empty":
        wav.write_bytes(b"")
    if case == "shorter_than_a_window":
        write_wav(wav, sine(0.95))  # 15,200 samples < one 0.96 s example (15,600)
    w = _audio.step_windows(wav, np.arange(3.0), _audio.EXAMPLE_SAMPLES, _audio.EXAMPLE_SAMPLES)
    assert (w.audio is None) == (case != "shorter_than_a_window")
    assert w.starts.shape == w.lengths.shape == w.valid.shape == (3,)
    assert not w.valid.any() and w.full_steps.size == 0 and w.partial_steps.size == 0
    if case == "shorter_than_a_window":
        assert w.lengths.tolist() == [15200, 0, 0]


def test_step_windows_edge_arguments(tmp_path):
    wav = write_wav(tmp_path / "a.wav", sine(1.0))
    empty = _audio.step_windows(wav, np.zeros(0), SR, SR)  # a video of zero steps
    assert empty.valid.shape == (0,) and empty.full_steps.size == 0
    with pytest.raises(ValueError, match="min_samples"):
        _audio.step_windows(wav, np.arange(1.0), window=SR, min_samples=SR + 1)
    with pytest.raises(ValueError, match="min_samples"):
        _audio.step_windows(wav, np.arange(1.0), window=SR, min_samples=0)
    from evoke.features import FeatureError

    with pytest.raises(FeatureError, match="audio file missing"):  # a path that should exist is a bug
        _audio.step_windows(tmp_path / "gone.wav", np.arange(1.0), SR, SR)


# -- VGGish -----------------------------------------------------------------------
def torchvggish_state_dict(seed: int = 0) -> dict:
    """Random weights with the key layout and shapes of torchvggish's vggish-10086976.pth."""
    import torch

    g = torch.Generator().manual_seed(seed)
    layers = {"features.0": (64, 1, 3, 3), "features.3": (128, 64, 3, 3), "features.6": (256, 128, 3, 3),
              "features.8": (256, 256, 3, 3), "features.11": (512, 256, 3, 3), "features.13": (512, 512, 3, 3),
              "embeddings.0": (4096, 12288), "embeddings.2": (4096, 4096), "embeddings.4": (128, 4096)}
    state = {}
    for key, shape in layers.items():
        fan_in = int(np.prod(shape[1:]))
        state[f"{key}.weight"] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        state[f"{key}.bias"] = torch.randn(shape[0], generator=g) * 0.01
    return state


@pytest.fixture(scope="module")
def random_vggish(tmp_path_factory) -> Path:
    import torch

    path = tmp_path_factory.mktemp("weights") / "random_vggish.pth"
    torch.save(torchvggish_state_dict(), path)
    return path


@pytest.fixture(scope="module")
def speechlike_wav(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    x = 0.3 * sine(3.5, 300.0) * (1 + np.sin(2 * np.pi * 3 * np.arange(56000) / SR)) + 0.05 * rng.normal(size=56000)
    return write_wav(tmp_path_factory.mktemp("audio") / "speechlike.wav", x)


@pytest.fixture(scope="module")
def vggish_random(random_vggish):
    """The vggish extractor on the random weights, loaded once for the module."""
    ex = create_extractor("vggish", {}, weights_paths={"vggish": str(random_vggish)})
    ex.ensure_loaded()
    return ex


def test_vggish_random_weights_through_the_loading_path(vggish_random, random_vggish, speechlike_wav):
    ex = vggish_random
    assert ex.step_shape == (128,) and ex.modality == "audio"
    res = ex.extract(audio_video(speechlike_wav, 4)).check(ex, 4)
    assert res.values.shape == (4, 128)
    assert res.mask.tolist() == [True, True, True, False]  # 3.5 s: the 4th 0.96 s window does not fit
    assert not res.values[3].any() and res.values[:3].std() > 0
    assert (res.values[:3] < 0).any()  # pre-activation by default
    # step k is the network on the example starting at k s
    x = _audio.open_audio(speechlike_wav).segment(0, 10**9)
    direct = ex.embed_examples(_audio.waveform_examples(x, np.array([16000])))
    np.testing.assert_allclose(res.values[1], direct[0], rtol=1e-4, atol=1e-5)

    relu = create_extractor("vggish", {"final_relu": True}, weights_paths={"vggish": str(random_vggish)})
    out = relu.extract(audio_video(speechlike_wav, 4)).check(relu, 4)
    assert (out.values >= 0).all()
    np.testing.assert_allclose(out.values[:3], np.maximum(res.values[:3], 0), rtol=1e-4, atol=1e-5)


def test_vggish_pca_postprocessing(vggish_random, random_vggish, speechlike_wav, tmp_path):
    import torch

    rng = np.random.default_rng(1)
    pca = {"pca_eigen_vectors": rng.normal(size=(128, 128)) * 0.3, "pca_means": rng.normal(size=(128, 1))}
    torch.save(pca, tmp_path / "pca.pth")  # NumPy arrays in a torch pickle, like torchvggish's file
    np.savez(tmp_path / "pca.npz", **pca)  # Google's format
    emb = vggish_random.extract(audio_video(speechlike_wav, 3)).values
    expected = np.round((np.clip((emb - pca["pca_means"][:, 0]) @ pca["pca_eigen_vectors"].T, -2, 2) + 2) * 63.75)
    ex = create_extractor("vggish", {"postprocess": True},
                          weights_paths={"vggish": str(random_vggish), "vggish_pca": str(tmp_path / "pca.pth")})
    res = ex.extract(audio_video(speechlike_wav, 3)).check(ex, 3)
    np.testing.assert_allclose(res.values, expected, atol=1.0)  # rounding at .5 boundaries
    assert res.values.min() >= 0 and res.values.max() <= 255
    np.testing.assert_array_equal(res.values, np.round(res.values))
    from evoke.features.vggish import load_pca_params, postprocess_embeddings

    np.testing.assert_array_equal(postprocess_embeddings(emb, *load_pca_params(tmp_path / "pca.npz")), res.values)


def test_vggish_missing_weights_names_file_and_command(monkeypatch, tmp_path):
    monkeypatch.setenv("EVOKE_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("EVOKE_CACHE", str(tmp_path / "cache"))
    ex = create_extractor("vggish")
    with pytest.raises(WeightsMissing) as err:
        ex.ensure_loaded()
    assert "vggish-10086976.pth" in str(err.value) and "evoke weights fetch" in str(err.value)
    ex = create_extractor("vggish", {"postprocess": True}, weights_paths={"vggish": str(tmp_path / "nope.pth")})
    with pytest.raises(WeightsMissing):
        ex.ensure_loaded()


def test_vggish_wrong_weights_file_is_a_clear_error(tmp_path):
    import torch

    from evoke.features import FeatureError

    torch.save({"features.0.weight": torch.zeros(64, 1, 3, 3)}, tmp_path / "wrong.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    for name in ("wrong.pth", "junk.pth"):
        ex = create_extractor("vggish", {}, weights_paths={"vggish": str(tmp_path / name)})
        with pytest.raises(FeatureError, match=name):
            ex.ensure_loaded()


def test_vggish_golden_against_the_tensorflow_smoke_test():
    from evoke.features.vggish import PCA_WEIGHTS, VGGISH_WEIGHTS

    if find(VGGISH_WEIGHTS) is None:
        pytest.skip("real VGGish weights (vggish-10086976.pth) not on this machine")
    ex = create_extractor("vggish")
    # vggish_smoke_test.py: 3 s of a 1 kHz sine, reference framing; published mean/std of the
    # pre-activation embeddings (TF 2.8-2.13): 0.000657 / 0.343, relative error up to 10%
    emb = ex.embed_examples(_audio.reference_examples(sine(3.0)))
    assert emb.shape == (3, 128)
    assert abs(emb.mean() - 0.000657) < 2e-3
    np.testing.assert_allclose(emb.std(), 0.343, rtol=0.1)
    if find(PCA_WEIGHTS) is not None:
        from evoke.features.vggish import load_pca_params, postprocess_embeddings

        post = postprocess_embeddings(emb, *load_pca_params(find(PCA_WEIGHTS)))
        np.testing.assert_allclose([post.mean(), post.std()], [126.0, 89.3], rtol=0.1)


# -- masks -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def audio_extractors(vggish_random):
    out = [vggish_random, create_extractor("logmel")]
    if importlib.util.find_spec("opensmile") is not None:
        out.append(create_extractor("opensmile_egemaps"))
    return out


@pytest.mark.parametrize("case", ["none", "empty", "short"])
def test_missing_or_short_audio_is_masked_not_an_error(audio_extractors, tmp_path, case):
    wav = {"none": None, "empty": tmp_path / "empty.wav", "short": tmp_path / "short.wav"}[case]
    if case == "empty":
        wav.write_bytes(b"")
    if case == "short":
        write_wav(wav, sine(0.95))  # shorter than one 0.96 s example (15,600 samples)
    for ex in audio_extractors:
        res = ex.extract(audio_video(wav, 3)).check(ex, 3)
        assert not res.mask.any(), ex.name
        assert not res.values.any(), ex.name


def test_zero_steps(audio_extractors, speechlike_wav):
    for ex in audio_extractors:
        res = ex.extract(audio_video(speechlike_wav, 0)).check(ex, 0)
        assert res.values.shape == (0, *ex.step_shape)


# -- logmel ------------------------------------------------------------------------
def test_logmel_layout(tmp_path):
    x = np.concatenate([sine(1.0, 1000.0), 0.1 * sine(1.0, 250.0), sine(0.5, 1000.0)])
    wav = write_wav(tmp_path / "tones.wav", x * 0.999)
    ex = create_extractor("logmel")
    assert ex.step_shape == (129,)
    res = ex.extract(audio_video(wav, 3)).check(ex, 3)
    assert res.mask.tolist() == [True, True, False]  # 0.5 s < min_coverage_s
    np.testing.assert_allclose(res.values[0, 128], -3.01, atol=0.05)  # full-scale sine: -3 dBFS
    np.testing.assert_allclose(res.values[1, 128], -23.01, atol=0.05)  # 0.1 amplitude: -20 dB lower
    spec = _audio.log_mel(np.round(x[:16000] * 0.999 * 32768) / 32768)
    np.testing.assert_allclose(res.values[0, :64], spec.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(res.values[0, 64:128], spec.std(0), rtol=1e-4, atol=1e-4)
    assert spec.shape[0] == 98  # the frames whose 25 ms lie inside the second
    assert res.values[1, :64].argmax() < res.values[0, :64].argmax()  # 250 Hz below 1 kHz
    short = create_extractor("logmel", {"min_coverage_s": 0.5}).extract(audio_video(wav, 3))
    assert short.mask.tolist() == [True, True, True]


def test_opensmile_egemaps(speechlike_wav):
    pytest.importorskip("opensmile")
    ex = create_extractor("opensmile_egemaps")
    res = ex.extract(audio_video(speechlike_wav, 4)).check(ex, 4)
    assert res.values.shape == (4, 88)
    assert res.mask.tolist() == [True, True, True, False]
    assert len(ex.feature_names) == 88 and res.values[:3].std() > 0


# -- the TF-Hub backend, with a stand-in TensorFlow ------------------------------------
FAKE_TF = {
    "tensorflow.py": """
        import numpy as np
        float32 = np.float32
        def constant(x, dtype=None):
            return np.asarray(x, dtype=dtype)
    """,
    "tensorflow_hub.py": """
        import numpy as np
        def load(handle):
            assert handle == "fake://vggish", handle
            def model(waveform):
                assert waveform.shape == (15600,), waveform.shape
                return np.full((1, 128), float(np.abs(waveform).mean()), dtype=np.float32)
            return model
    """,
}


@pytest.fixture()
def fake_tf_python(tmp_path) -> str:
    """A 'python' whose environment has stand-ins for tensorflow and tensorflow_hub."""
    lib = tmp_path / "fake_tf"
    lib.mkdir()
    for name, code in FAKE_TF.items():
        (lib / name).write_text(textwrap.dedent(code))
    exe = tmp_path / "tfpython"
    exe.write_text(f'#!/bin/sh\nPYTHONPATH="{lib}" exec "{sys.executable}" "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


def test_tfhub_script_and_backend(fake_tf_python, speechlike_wav, tmp_path):
    out = tmp_path / "hop.npy"
    subprocess.run([fake_tf_python, str(REPO / "scripts" / "vggish_tfhub.py"), str(speechlike_wav), str(out),
                    "--model", "fake://vggish"], check=True, timeout=120)
    by_hop = np.load(out)
    assert by_hop.shape == (3, 128)  # examples at 0, 1, 2 s of 3.5 s

    ex = create_extractor("vggish", {"backend": "tfhub", "tfhub_python": fake_tf_python,
                                     "tfhub_model": "fake://vggish"})
    assert ex.weights() == []
    res = ex.extract(audio_video(speechlike_wav, 5)).check(ex, 5)
    assert res.mask.tolist() == [True, True, True, False, False]
    np.testing.assert_allclose(res.values[:3], by_hop, rtol=1e-6)
    x = _audio.open_audio(speechlike_wav).segment(16000, 16000 + 15600)
    np.testing.assert_allclose(res.values[1], np.abs(x).mean(), rtol=1e-5)
    assert "tensorflow" not in sys.modules  # the core never imports TensorFlow


def test_tfhub_backend_failures_are_clear(speechlike_wav, tmp_path):
    ex = create_extractor("vggish", {"backend": "tfhub", "tfhub_python": str(tmp_path / "no-such-python")})
    with pytest.raises(Exception, match="tfhub_python|envs/tfhub.yaml"):
        ex.extract(audio_video(speechlike_wav, 2))
    if importlib.util.find_spec("tensorflow") is None:  # this Python has no TensorFlow: the script fails
        ex = create_extractor("vggish", {"backend": "tfhub", "tfhub_python": sys.executable})
        with pytest.raises(Exception, match="vggish_tfhub.py failed"):
            ex.extract(audio_video(speechlike_wav, 2))
