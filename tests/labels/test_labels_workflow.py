"""workflow/rules/labels.smk: its helpers, and a dry run of the `labels` target on the demo config."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
import yaml

from evoke.labels.workflow import LabelSettings, cli_flags

from .conftest import DEMO_ANNOTATIONS, REPO


def test_cli_flags_quote_and_skip():
    s = cli_flags(range=[-1.0, 1.0], audio="keep", min_annotator_agreement=None, soft=False, no_collapse=True,
                  label_map={"happiness": "joy", "anger": "disgust"}, emotions=["joy", "awe"], n=30)
    assert shlex.split(s) == ["--range=-1.0,1.0", "--audio=keep", "--no-collapse",
                              "--label-map=happiness=joy,anger=disgust", "--emotions=joy,awe", "--n=30"]
    assert cli_flags(name="a b; rm -rf /") == "'--name=a b; rm -rf /'"


def test_label_settings():
    s = LabelSettings({"annotations": "ann", "eev": {"csv": None}, "vce": {"responses": "/abs/r.csv"},
                       "viewers": {"ratings": ["a.dat", "sub/b.csv"]}})
    assert s.file("eev", "csv", "eev.csv") is None
    assert s.file("vce", "responses", "x") == "/abs/r.csv"
    assert s.file("v2v", "votes", "v2v_votes.csv") == "ann/v2v_votes.csv"
    assert s.files("viewers", "ratings", []) == ["ann/a.dat", "sub/b.csv"]
    # no annotations folder configured: bare names resolve to nothing, builders are off
    assert LabelSettings(None).file("vce", "responses", "r.csv") is None
    assert LabelSettings(None).files("viewers", "ratings", ["v.csv", "/abs/w.csv"]) == ["/abs/w.csv"]
    assert s.get("vce", "audio", "keep") == "keep"


def test_dry_run_of_the_labels_target(tmp_path):
    if not (DEMO_ANNOTATIONS / "vce_responses.csv").is_file():
        pytest.skip("demo not built")
    (tmp_path / "data").symlink_to(REPO / "data")
    # the repository's config with the demo's own settings (evoke demo build's config.yaml) over it
    from evoke.config import merge
    from evoke.demo import demo_config

    cfg = merge(yaml.safe_load((REPO / "config.yaml").read_text()), demo_config(REPO / "data" / "demo"))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    rules = REPO / "workflow" / "rules"
    (tmp_path / "Snakefile").write_text(
        'configfile: "config.yaml"\n'
        + "".join(f'include: "{rules / n}"\n' for n in ("common.smk", "ingest.smk", "labels.smk")))
    snakemake = REPO / ".venv" / "bin" / "snakemake"
    if not snakemake.exists():
        snakemake = [sys.executable, "-m", "snakemake"]
    else:
        snakemake = [str(snakemake)]
    r = subprocess.run([*snakemake, "labels", "-n"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for rule in ("labels_vce", "labels_v2v_votes", "labels_v2v_lists", "labels_v2v_sample", "labels_eev",
                 "labels_viewers", "danmaku_parse", "danmaku_train", "danmaku_classify", "danmaku_windows"):
        assert rule in r.stdout, (rule, r.stdout)
