"""Every extractor that runs a torch network is marked ``uses_torch``, so its shard job gets the
visible GPU (and the workflow's GPU rule); the others run on the CPU rule."""

import importlib
import inspect

from evoke.features import EXTRACTORS
from evoke.features.stage import job_device

TORCH_NETWORKS = {"efficientnet", "inception_v3", "i3d", "vggish", "facenet", "fer"}


def test_torch_extractors_are_marked():
    assert {n for n, c in EXTRACTORS.items() if c.uses_torch} == TORCH_NETWORKS


def test_modules_that_build_torch_networks_are_the_marked_ones():
    # independent of the flag: which extractor modules construct a torch.nn network, a
    # torchvision or facenet-pytorch model, or use facenet's MTCNN detector
    builds = set()
    for name, cls in EXTRACTORS.items():
        src = inspect.getsource(importlib.import_module(cls.__module__))
        if any(s in src for s in ("nn.Module", "facenet_pytorch", "torchvision", "features.facenet import")):
            builds.add(name)
    assert builds == TORCH_NETWORKS


def test_cpu_only_extractors_never_get_a_gpu():
    for name, cls in EXTRACTORS.items():
        if not cls.uses_torch:
            assert job_device(name, {"device": "cuda"}) == "cpu"
