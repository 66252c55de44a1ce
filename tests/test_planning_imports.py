"""Planning the workflow (``snakemake -n``) imports nothing heavy: no torch, no model libraries.

The rules import evoke's registries (tasks, extractors, heads' memory default) to plan
their jobs; the libraries that fit or run models are imported by the jobs themselves. A
user planning a run on their own videos needs neither the time nor the install of torch.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, VTEST, require_media

pytestmark = pytest.mark.slow  # a snakemake dry run in a subprocess (about 25 s on 2 shared cores)

# libraries that only fitting or running a model needs
HEAVY = ("torch", "torchvision", "transformers", "lightgbm", "sklearn", "facenet_pytorch", "tensorflow")

_RUN = """
import sys
from snakemake.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
print("HEAVY MODULES:", " ".join(heavy) or "none")
sys.exit(code)
""" % (HEAVY,)


def dry_run_imports(workdir: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """``snakemake -n`` in ``workdir`` run in a Python that then lists the heavy libraries it
    imported. Returns the process and those libraries' names."""
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, "-n", "--snakefile", str(REPO / "Snakefile"), "--directory",
         str(workdir), "--cores", "2", *args], capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("HEAVY MODULES:")]
    assert line, out[-3000:]
    found = line[-1].split(":", 1)[1].split()
    return proc, [] if found == ["none"] else found


def test_planning_own_videos_imports_no_torch(tmp_path):
    """The README's own-videos command, dry: the train rules are included (and their task
    registry imported), yet torch and the model libraries are not."""
    require_media()
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    (tmp_path / "my.csv").write_text(f"video_id,source,split\nwalk,{VTEST.as_uri()},train\n")
    proc, heavy = dry_run_imports(tmp_path, "--config", "dataset=mine", "manifest=my.csv")
    assert "frames_shard" in proc.stdout  # it planned the run
    assert heavy == [], f"planning imported {heavy}"
