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


def test_pretrained_files_only_for_the_bert_head_on_a_local_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    bert = {"head": "bert", "pretrained": str(tmp_path)}
    assert LabelSettings({"danmaku": bert}).pretrained_files("danmaku") == [str(tmp_path / "config.json")]
    assert LabelSettings({"danmaku": {**bert, "head": "light"}}).pretrained_files("danmaku") == []
    assert LabelSettings({"danmaku": {**bert, "pretrained": "hfl/chinese-bert-wwm-ext"}}).pretrained_files(
        "danmaku") == []


def test_dry_run_of_the_labels_target(tmp_path):
    if not (DEMO_ANNOTATIONS / "vce_responses.csv").is_file():
        pytest.skip("demo not built")
    (tmp_path / "data").symlink_to(REPO / "data")
    # the repository's config with the demo's own settings (evoke demo build's config.yaml) over it
    from evoke.config import merge
    from evoke.demo import demo_config

    cfg = merge(yaml.safe_load((REPO / "config.yaml").read_text()), demo_config(REPO / "data" / "demo"))
    # head bert with a local folder: its files are danmaku_train's inputs (not only a path in params)
    bert = tmp_path / "bert"
    (bert / "sub").mkdir(parents=True)
    for name in ("config.json", "sub/model.safetensors"):
        (bert / name).write_text("{}")
    cfg["labels"]["danmaku"] = {**cfg["labels"].get("danmaku", {}), "head": "bert", "pretrained": str(bert)}
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
    inputs = {block.split(":\n", 1)[0].split()[-1]: block.split("input: ", 1)[1].split("\n", 1)[0].split(", ")
              for block in r.stdout.split("rule ")[1:] if "input: " in block.split("output:", 1)[0]}
    assert {str(bert / "config.json"), str(bert / "sub" / "model.safetensors")} <= set(inputs["danmaku_train"])
    # the EEV builder bounds times by the ingested videos' durations
    assert "results/demo/ingest/probe.parquet" in inputs["labels_eev"]
