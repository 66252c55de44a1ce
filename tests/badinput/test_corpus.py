"""The input side's bad-input corpus through the real workflow: each case's defined outcome.

One Snakemake run ingests every case of ``corpus.build_corpus`` (one shard) and
parses every danmaku file; the probe table, the dataset's failures table, the
comments table and the parse log must show exactly the outcome each case
defines. Then: a download-only setting reruns nothing, a content setting
reruns ingest, and a manifest with a too-long (in bytes) id is refused.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import polars as pl
import pytest

from .corpus import MAX_FILESIZE, build_corpus, write_manifest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
PLUGINS = Path(__file__).parent / "ytdlp_plugins"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def snakemake(workdir, *args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGINS), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
                           "--cores", "2", *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_every_case_has_its_defined_outcome_through_the_workflow(served, tmp_path):
    root, http_root = served
    cases = build_corpus(root, http_root)
    write_manifest(cases, tmp_path / "manifest.csv")
    config = tmp_path / "config.yaml"
    config.write_text(f"dataset: bad\nmanifest: manifest.csv\nshard_size: 100\n"
                      f"ingest:\n  max_filesize: {MAX_FILESIZE}\n")
    target = "results/bad/labels/danmaku/comments.parquet"
    proc = snakemake(tmp_path, target)
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = tmp_path / "results" / "bad"
    probe = {r["video_id"]: r for r in pl.read_parquet(res / "ingest" / "probe.parquet").iter_rows(named=True)}
    assert sorted(probe) == sorted(c.video_id for c in cases)
    for c in cases:
        r = probe[c.video_id]
        assert r["status"] == c.expect, (c.video_id, r["error"])
        if c.error:
            assert c.error in r["error"] and "\n" not in r["error"], (c.video_id, r["error"])
        for key, want in c.checks.items():
            if key == "decoded_shorter":
                assert r["decoded_duration_s"] < r["duration_s"] - 0.3, c.video_id
            elif isinstance(want, tuple):
                assert r[key] == pytest.approx(want[0], abs=want[1]), (c.video_id, key, r[key])
            else:
                assert r[key] == want, (c.video_id, key, r[key])
        if c.expect == "ok":
            assert r["decoded_duration_s"] <= r["duration_s"] + 1e-6 and r["decoded_duration_s"] > 0
    failures = pl.read_parquet(res / "failures.parquet")
    by_stage = {s: sorted(failures.filter(pl.col("stage") == s)["video_id"]) for s in failures["stage"].unique()}
    assert by_stage.pop("ingest") == sorted(c.video_id for c in cases if c.expect == "failed")
    assert by_stage.pop("labels") == sorted(c.video_id for c in cases if c.danmaku_error)
    assert not by_stage
    labels_errors = dict(failures.filter(pl.col("stage") == "labels").select("video_id", "error").iter_rows())
    comments = pl.read_parquet(res / "labels" / "danmaku" / "comments.parquet")
    for c in cases:
        if c.danmaku_error:
            assert c.danmaku_error in labels_errors[c.video_id], (c.video_id, labels_errors[c.video_id])
        if c.comments is not None:
            assert comments.filter(pl.col("video_id") == c.video_id)["text"].to_list() == c.comments, c.video_id
    log = (res / "logs" / "labels" / "danmaku_parse.log").read_text()
    summary = re.search(r"danmaku: dropped (\d+): (.*)", log)
    counted = {reason: int(n) for n, reason in re.findall(r"(\d+) ([a-z_]+)(?: \(e\.g\.[^)]*\))?(?:, |$)",
                                                            summary.group(2))}
    expected: dict[str, int] = {}
    for c in cases:
        for reason, n in c.drops.items():
            expected[reason] = expected.get(reason, 0) + n
    assert counted == expected
    assert not (res / "ingest" / "work").exists() or not any((res / "ingest" / "work").iterdir())

    # a download-only setting reruns nothing; a content setting reruns ingest
    original = config.read_text()
    config.write_text(original + "  retries: 7\n  rate_limit: 5M\n  socket_timeout: 12\n")
    dry = snakemake(tmp_path, target, "-n")
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-2000:]
    config.write_text(original + "  max_height: 360\n")
    dry = snakemake(tmp_path, target, "-n")
    assert "ingest_shard" in dry.stdout, dry.stdout[-2000:]
    config.write_text(original)

    # an id of 100 CJK characters (300 bytes) is refused before anything runs
    long_id = tmp_path / "long"
    long_id.mkdir()
    (long_id / "manifest.csv").write_text(f"video_id,source,split\n{'視' * 100},{root / 'plain.mp4'},train\n",
                                          encoding="utf-8")
    (long_id / "config.yaml").write_text("dataset: long\nmanifest: manifest.csv\n")
    proc = snakemake(long_id, "ingest", "-n")
    assert proc.returncode != 0 and "300 bytes in UTF-8, over the limit of 200 bytes" in proc.stdout + proc.stderr
