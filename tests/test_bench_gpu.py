"""bench/gpu.py runs end to end on the CPU in its dry mode (issue 16: the GPU benchmark is
kept ready to run on a lent GPU machine)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO


@pytest.mark.slow
def test_gpu_bench_dry_run_writes_every_section(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--dry", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["mode"] == "dry" and report["device"] == "cpu"
    assert not report["skipped"], report["skipped"]
    stages = {s["extractor"]: s for s in report["stages"]}
    assert sorted(stages) == ["efficientnet", "i3d", "inception_v3"]
    for name, s in stages.items():
        assert "error" not in s, s
        assert s["images"] > 0 and s["stage_s"] > 0 and s["bare_s"] > 0
        assert s["ratio"] == pytest.approx(s["stage_s"] / s["bare_s"])
    # 2 clips of 3 s at 1 Hz: 6 frames for the image models; I3D: 8 clips of 16 frames per clip
    assert stages["inception_v3"]["images"] == stages["efficientnet"]["images"] == 6
    assert stages["i3d"]["images"] == 2 * 8 * 16
    eq = report["equality"]
    assert eq["status"] == "ran" and eq["returncode"] == 0
    if not torch.cuda.is_available():
        assert eq.get("skipped", 0) > 0 and not eq.get("passed") and not eq.get("failed")
        assert report["decode"]["gpu"]["decoder"] is None
        assert "frames backend 'nvdec'" in report["decode"]["gpu"]["reason"]
        assert "frames backend 'nvdec'" in report["decode"]["nvdec_1hz"]["skipped"]
    assert report["gpu_requirements"] == {"status": "not installed (dry run)"}
    dec = report["decode"]
    assert dec["frames"] == 90 and dec["evoke_1hz_frames"] == 3
    assert dec["pyav_full_decode_frames_per_s"] > 0
