"""The torch extractors' ``amp`` setting: accepted values, what each means on CUDA and on
the CPU, and the precision behind the CPU/GPU tolerances of test_cpu_gpu.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evoke.features import create_extractor
from evoke.features._torch import amp_dtype, inference
from evoke.features.base import FeatureError

TORCH_EXTRACTORS = ["efficientnet", "inception_v3", "i3d", "vggish"]


@pytest.mark.parametrize("name", TORCH_EXTRACTORS)
def test_amp_defaults_to_auto_and_refuses_unknown_values(name):
    assert create_extractor(name, {}).config.amp == "auto"
    for ok in ("auto", "fp16", "bf16", "off", True, False):
        assert create_extractor(name, {"amp": ok}).config.amp == ok
    with pytest.raises(FeatureError, match="amp must be one of auto, fp16, bf16, off"):
        create_extractor(name, {"amp": "fp8"})


def test_amp_dtype_per_setting():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert amp_dtype(cuda, "auto") is torch.float16
    assert amp_dtype(cuda, "fp16") is amp_dtype(cuda, True) is torch.float16
    assert amp_dtype(cuda, "off") is amp_dtype(cuda, False) is None
    for setting in ("auto", "fp16", "bf16", "off", True, False):  # the CPU always computes in fp32
        assert amp_dtype(cpu, setting) is None
    with pytest.raises(ValueError, match="amp must be one of"):
        amp_dtype(cuda, "half")


def test_cpu_ignores_amp_bit_for_bit():
    """On the CPU every amp setting gives the fp32 numbers (the stores of a CPU job do not
    depend on it)."""
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(4, 96, 64)).astype(np.float32))
    torch.manual_seed(0)
    from evoke.features.vggish import build_network

    net = build_network(final_relu=False).eval()
    outs = []
    for setting in ("off", "auto", "fp16", "bf16"):
        with inference(torch.device("cpu"), setting):
            outs.append(net(x).numpy())
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


def test_reduced_precision_error_is_inside_the_stated_tolerances():
    """The relative L2 error of float16 / bfloat16 autocast against a float64 forward, on
    the CPU, for VGGish with He-initialised weights on log-mel-like input: the measurement
    that backs AMP_RTOL (2e-2) and BF16_RTOL (1e-1) in test_cpu_gpu.py, and ``auto`` = fp16."""
    from evoke.features.vggish import build_network

    torch.manual_seed(0)
    net = build_network(final_relu=False).eval()
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    x = torch.from_numpy(np.random.default_rng(1).normal(0, 2, (6, 96, 64)).astype(np.float32))
    with torch.inference_mode():
        ref = net.double()(x.double()).numpy()
    net.float()
    err = {}
    for dtype in (torch.float16, torch.bfloat16):
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype):
            out = net(x).float().numpy()
        err[dtype] = (np.linalg.norm(out - ref, axis=1) / np.linalg.norm(ref, axis=1)).max()
    assert 1e-5 < err[torch.float16] < 2e-2 / 4
    assert err[torch.float16] < err[torch.bfloat16] < 1e-1 / 4
