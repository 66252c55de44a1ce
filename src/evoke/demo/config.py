"""The demo's own config layer, ``data/demo/config.yaml`` (laid over ``config.yaml``)."""

from __future__ import annotations

from pathlib import Path

from evoke.store import atomic_path

CONFIG_NAME = "config.yaml"
CONFIG_HEADER = """\
# The demo's workflow settings, written by `evoke demo build` (do not edit: the next
# build writes it again). The repository's config.yaml holds the rest; run with
#   snakemake --cores 2 --configfile {path}
# (scripts/demo.sh does). The annotations are a seeded simulation for exercising the
# pipeline, not emotion ground truth.
"""


def demo_config(out: str | Path = "data/demo") -> dict:
    """The demo's own config layer for the demo folder ``out`` (absolute paths, as the
    manifest's ``file://`` URLs are): its manifest, shards of 20 (two for the
    40-clip demo), its annotations and the training of every task on colour and
    motion features; ``labels.viewers.subtitles``: the build's simulated subtitle files
    (``annotations/subtitles/*_subtitle.srt``; left out where there are none, as in a
    build older than builder 5), so ``viewer_valence`` trains on subtitle cues. Laid over
    the repository's ``config.yaml`` with ``--configfile``; a test can lay it over any
    config without building the demo.
    """
    out = Path(out).resolve()
    labels = {
        "annotations": str(out / "annotations"),
        # leave-one-out agreement: drops the random answerers scored on 3+ videos (seed 0:
        # 0.00 and 0.12; the next annotator 0.31)
        "vce": {"min_annotator_agreement": 0.2},
    }
    subtitles = sorted((out / "annotations" / "subtitles").glob("*_subtitle.srt"))
    if subtitles:
        labels["viewers"] = {"subtitles": [str(p) for p in subtitles]}
    return {
        "dataset": "demo",
        "manifest": str(out / "manifest.csv"),
        "shard_size": 20,
        "labels": labels,
        "train": {
            "tasks": ["vce", "v2v", "v2v_from_emotions", "eev", "danmaku_ldl", "viewer_valence"],
            "heads": ["lightgbm", "linear", "full"],
            "feature_sets": [["colour", "motion"]],
        },
    }


def write_demo_config(out: str | Path) -> Path:
    """Write :func:`demo_config` to ``out/config.yaml`` (atomically; unchanged files are
    left alone). Returns the path."""
    import yaml

    out = Path(out)
    path = out / CONFIG_NAME
    text = CONFIG_HEADER.format(path=path) + yaml.safe_dump(demo_config(out), sort_keys=False)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return path
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
