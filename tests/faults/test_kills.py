"""Fault injection through the real workflow: kills at seeded random points in every stage.

One uninterrupted reference run, and one run that is killed again and again (SIGKILL to the
job's worker process, SIGKILL to Snakemake's whole process group, SIGTERM to Snakemake), each
time in a job of the stage under test, and restarted with the same command (no --unlock, no
--rerun-incomplete: the workflow profile and the run records make that unnecessary). The
killed run must end with the same content as the reference (every HDF5 dataset with its
attributes, every Parquet table) and no temporary, part or lock file left. The kills chain:
each restart resumes the previous one's work, so 20 kill points cost about one run plus
20 Snakemake start-ups. Lean on purpose: 9 short demo clips (one not a video), 48-pixel
frames, the two cheapest extractors, one linear head.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from conftest import REPO

pytestmark = pytest.mark.slow
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
DEMO = REPO / "data" / "demo"
TARGETS = ("features", "labels", "train")
# what a worker's command line holds, per stage (shard jobs and merges alike)
STAGES = {
    "ingest": ("-m evoke ingest",),
    "frames": ("-m evoke frames",),
    "features": ("-m evoke features",),
    "labels": ("-m evoke labels", "-m evoke danmaku"),
    "train": ("-m evoke train",),
}
# tables that differ in their last bits between two uninterrupted runs (the danmaku
# classifier's training, the viewer-valence averages' summation order: not this suite's
# subject); they are compared to a relative 1e-4 instead of bit for bit
NOT_BITWISE = ("labels/danmaku/scored.parquet", "labels/viewer_valence.parquet",
               "labels/viewer_valence_segments.parquet")
KILLS = ("worker", "group", "term")
KILLS_PER_STAGE = {"ingest": 4, "frames": 4, "features": 5, "labels": 5, "train": 5}
# from this kill of a stage on, a forced rerun is killed even while the stage has unforced work:
# the heads train while the labels are built, so theirs always are; frames' last two, so that
# an interrupted `--forcerun frames_shard` is always among the kills (it once lost a shard)
FORCED_FROM = {"frames": 2, "train": 0}
# a stage's rules, rerun with --forcerun when its jobs all finished in an earlier restart (jobs
# of later stages run beside the killed stage's): the forced rerun is killed instead, and the
# plain command must then redo it (an interrupted --forcerun: the killed job's outputs are
# gone while the next stage's are still there, and only a target that lists them gets them
# rebuilt: every target lists its stage's files and those of the stages it reads)
FORCE = {"ingest": ("ingest_shard",), "frames": ("frames_shard",),
         "features": ("features_shard", "features_shard_gpu"),
         "labels": ("labels_vce", "labels_v2v_votes", "labels_eev", "labels_viewers", "danmaku_train"),
         "train": ("train_head",)}


def start(workdir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2",
         *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 900) -> str:
    out = proc.communicate(timeout=timeout)[0]
    if proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{out[-6000:]}")
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A manifest of 9 demo clips (plus a text file posing as a video) and its config."""
    if not (DEMO / "manifest.csv").is_file():
        pytest.fail("the demo is not built: run scripts/setup.sh (evoke demo build)")
    d = tmp_path_factory.mktemp("faults")
    lines = (DEMO / "manifest.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    chosen = rows[:5] + [r for r in rows if ",val," in r][:2] + [r for r in rows if ",test," in r][:2]
    (d / "not_a_video.mp4").write_text("this is not a video\n" * 10)
    ncols = header.count(",") + 1
    broken = ",".join(["broken", str(d / "not_a_video.mp4"), "train"] + [""] * (ncols - 3))
    (d / "manifest.csv").write_text("\n".join([header, *chosen, broken]) + "\n")
    (d / "config.yaml").write_text(
        f"dataset: k\nmanifest: {d / 'manifest.csv'}\nshard_size: 4\nframes:\n  short_side: 48\n"
        f"features:\n  extractors: [colour, motion]\n  device: cpu\n"
        f"labels:\n  annotations: {DEMO / 'annotations'}\n"
        f"train:\n  tasks: [vce]\n  heads: [linear]\n  feature_sets: [[colour, motion]]\n")
    return d


def workdir(project: Path, name: str) -> Path:
    w = project / name
    w.mkdir()
    (w / "config.yaml").write_text((project / "config.yaml").read_text())
    return w


def _attrs(obj) -> list:
    return sorted((k, repr(v.tolist() if hasattr(v, "tolist") else v)) for k, v in obj.attrs.items())


def content(results: Path) -> dict[str, str]:
    """sha256 per artifact: every HDF5 group and dataset with its attributes (dataset bytes
    included), every Parquet table's schema and rows. Logs and benchmarks (timings) are left out."""
    out = {}
    for p in sorted(results.rglob("*")):
        rel = p.relative_to(results).as_posix()
        if rel.split("/")[0] in ("logs", "benchmarks"):
            continue
        h = hashlib.sha256()
        if p.suffix == ".h5":
            with h5py.File(p, "r") as f:
                h.update(repr(_attrs(f)).encode())

                def visit(name, obj):
                    h.update(f"{name}{_attrs(obj)}".encode())
                    if isinstance(obj, h5py.Dataset):
                        h.update(f"{obj.dtype}{obj.shape}".encode())
                        h.update(obj[()].tobytes())

                f.visititems(visit)
        elif p.suffix == ".parquet":
            df = pl.read_parquet(p)
            h.update(repr(df.schema).encode())
            h.update(df.hash_rows(seed=0).to_numpy().tobytes())
        else:
            continue
        out[rel] = h.hexdigest()
    return out


def leftovers(work: Path) -> list[str]:
    """Temporaries, parts, shard locks and run records left anywhere under the results."""
    bad = []
    for p in (work / "results").rglob("*"):
        rel = p.relative_to(work).as_posix()
        if ".tmp-" in p.name or p.name.endswith(".h5.lock") or (p.parent.name == "parts" and any(p.iterdir())):
            bad.append(rel)
        if p.parent.name == ".runs":
            bad.append(rel)
    return sorted(bad)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def workers(group: int, stage: str) -> list[int]:
    """PIDs of the python processes of ``stage``'s jobs in Snakemake's process group."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if os.getpgid(int(d.name)) != group:
                continue
        except OSError:
            continue
        cmd = _cmdline(int(d.name))
        if cmd.startswith(("/bin/bash", "/usr/bin/bash", "bash")):
            continue
        if any(m in cmd for m in STAGES[stage]):
            found.append(int(d.name))
    return found


def kill_in(proc: subprocess.Popen, stage: str, how: str, rng: random.Random, timeout: float = 600) -> bool:
    """Wait for a job of ``stage``, let it run a random while, then kill as ``how`` says.
    False when the run ended before a job of the stage could be killed (nothing left there)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if workers(proc.pid, stage):
            time.sleep(rng.uniform(0.3, 2.5))  # the job is somewhere in its import, a video or a commit
            live = workers(proc.pid, stage)
            if not live:
                continue  # it finished meanwhile: wait for the next one
            try:
                if how == "worker":
                    os.kill(rng.choice(live), signal.SIGKILL)
                elif how == "group":
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            return True
        time.sleep(0.05)
    return False


def test_kills_anywhere_then_the_same_command_give_the_uninterrupted_runs_content(project):
    ref = workdir(project, "reference")
    finish(start(ref, *TARGETS))
    expected = content(ref / "results" / "k")
    assert any(k.startswith("train/") for k in expected) and any(k.startswith("labels/") for k in expected)
    failures = pl.read_parquet(ref / "results" / "k" / "failures.parquet")
    assert failures["video_id"].to_list() == ["broken"] and failures["stage"].to_list() == ["ingest"]

    work = workdir(project, "killed")
    rng = random.Random(20261201)
    hits: list[tuple[str, str]] = []
    refused_second = False
    for stage in STAGES:
        n = 0
        forced = False
        while n < KILLS_PER_STAGE[stage]:
            forced = forced or n >= FORCED_FROM.get(stage, KILLS_PER_STAGE[stage])
            how = KILLS[len(hits) % len(KILLS)]
            force = ("--forcerun", *FORCE[stage]) if forced else ()
            proc = start(work, *TARGETS, *force)
            if not refused_second and stage == "frames":
                # a second invocation on the same results folder while this one runs is refused
                while proc.poll() is None and not list((work / "results" / "k" / ".runs").glob("*.json")):
                    time.sleep(0.1)
                second = subprocess.run(
                    [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(work), "--cores", "2",
                     *TARGETS], capture_output=True, text=True, timeout=300)
                text = second.stdout + second.stderr
                assert second.returncode != 0 and "is in use by another Snakemake run" in text, text[-3000:]
                assert f"PID {proc.pid}" in text
                refused_second = True
            if not kill_in(proc, stage, how, rng):
                finish(proc)  # the stage had no work left for another kill
                if forced:
                    break
                forced = True  # kill a forced rerun of the stage instead
                continue
            try:
                proc.communicate(timeout=600)  # SIGTERM lets Snakemake wind down; a killed worker fails its job
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
            hits.append((stage, f"{how}+forced" if forced else how))
            n += 1
    out = finish(start(work, *TARGETS))
    assert "--unlock" not in out and "IncompleteFilesException" not in out
    summary = json.dumps(hits)
    assert len(hits) >= 20, summary
    assert {s for s, _ in hits} == set(STAGES), summary
    assert any(s == "frames" and how.endswith("+forced") for s, how in hits), summary
    assert refused_second
    got = content(work / "results" / "k")
    differ = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
    for rel in NOT_BITWISE:
        if rel in differ:
            assert_frame_equal(pl.read_parquet(ref / "results" / "k" / rel),
                               pl.read_parquet(work / "results" / "k" / rel), check_exact=False, rel_tol=1e-4)
            differ.remove(rel)
    assert not differ, f"content differs after kills {summary}: {differ}"
    assert leftovers(work) == []
    again = subprocess.run(
        [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(work), "--cores", "2", "-n",
         *TARGETS], capture_output=True, text=True, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr
    print(f"kill points survived with identical content: {len(hits)} {summary}")


def test_batch_size_device_and_an_unrelated_weights_path_rerun_nothing(project):
    """batch_size, the device and an unrelated extractor's weights path change no number."""
    work = project / "reference"
    if not (work / "results" / "k" / "features" / "index.parquet").exists():
        pytest.skip("needs the reference run of the kill test")
    changed = {"extractors": ["colour", "motion"], "device": "auto",
               "weights": {"vggish": "/nowhere/vggish.pth"}, "settings": {"colour": {"batch_size": 7}}}
    dry = subprocess.run(
        [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(work), "--cores", "2", "-n",
         "features", "--config", f"features={json.dumps(changed)}"], capture_output=True, text=True, timeout=300)
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:] + dry.stderr[-3000:]


# one file of each stage that an interrupted `--forcerun` of its rule removed, and the user-facing
# targets that must plan it again (every target asks for its own stage's files and those of the
# stages it reads: the labels builders read the probe table, the heads read vce only)
REMOVED = {"ingest": "ingest/shards/s00000.parquet", "frames": "frames/s00001.h5",
           "features": "features/colour/s00002.h5", "labels": "labels/vce.parquet",
           "danmaku": "labels/danmaku/scored.parquet"}
PLANNED = {"ingest": {"ingest"}, "frames": {"ingest", "frames"}, "features": {"ingest", "frames", "features"},
           "labels": {"ingest", "labels", "danmaku"}, "train": {"ingest", "frames", "features", "labels"},
           "report": {"ingest", "frames", "features", "labels"}, "predict": {"ingest", "frames", "features", "labels"},
           "all": set(REMOVED)}


def planned_jobs(text: str) -> dict[str, tuple[set[str], set[str]]]:
    """``{rule: (input files, output files)}`` of the jobs a dry run plans (a rule's jobs merged)."""
    jobs: dict[str, tuple[set[str], set[str]]] = {}
    rule = None
    for line in text.splitlines():
        words = line.strip().split(maxsplit=1)
        if line[:1] not in (" ", "") and words and words[0] in ("rule", "localrule") and line.endswith(":"):
            rule = words[1][:-1]
            jobs.setdefault(rule, (set(), set()))
        elif rule and len(words) == 2 and words[0] in ("input:", "output:"):
            jobs[rule][words[0] == "output:"].update(f.strip() for f in words[1].split(","))
    return jobs


def test_every_target_rebuilds_the_files_an_interrupted_forcerun_removed(project):
    """A killed `--forcerun` removed a job's outputs while the next stage's, and the merges', are
    still newer; Snakemake rebuilds a missing file only when a target asks for it, so every
    user-facing target must ask for its stage's files and those of the stages before it. The
    report and predict jobs also wait for the tables they read (the VCE labels for the report's
    plots, the probe table for the predictions' splits, a viewer_valence model's subtitle words;
    a head on a pre-built table for its splits)."""
    ref = project / "reference"
    if not (ref / "results" / "k" / "features" / "index.parquet").exists():
        pytest.skip("needs the reference run of the kill test")
    work = project / "forced"
    shutil.copytree(ref, work, symlinks=True)
    res = work / "results" / "k"
    for rel in REMOVED.values():  # what Snakemake does when the forced job starts; then the kill
        (res / rel).unlink()
        if rel.endswith(".h5"):
            (res / rel.replace(".h5", ".status.parquet")).unlink()
    # models of this dataset's train/ for the predict target (the reference configures none), one
    # that reads subtitle words; a head on a pre-built VCE table, whose split may come from the probe
    models = ("--config", "predict={models: [results/k/train/vce/linear/colour+motion, "
              "results/k/train/viewer_valence/linear/colour+motion]}")
    extra = {"predict": models, "all": models,
             "train": ("results/k/train/v2v_from_emotions/linear/labels/metrics.json", "--config",
                       f"labels={{tables: {{vce: {ref / 'results' / 'k' / 'labels' / 'vce.parquet'}}}}}")}

    def planned(target: str) -> tuple[str, dict]:
        dry = subprocess.run(
            [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(work), "--cores", "2", "-n",
             target, *extra.get(target, ())], capture_output=True, text=True, timeout=300)
        assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
        return target, planned_jobs(dry.stdout)

    with ThreadPoolExecutor(2) as pool:  # dry runs only read the folder: two at a time
        jobs = dict(pool.map(planned, PLANNED))
    got = {target: {stage for stage, rel in REMOVED.items()
                    if any(f"results/k/{rel}" in outputs for _, outputs in plan.values())}
           for target, plan in jobs.items()}
    assert got == PLANNED
    assert "results/k/labels/vce.parquet" in jobs["report"]["report_build"][0]
    assert {"results/k/ingest/probe.parquet", "results/k/labels/viewer_valence_segments.parquet"} <= \
        jobs["predict"]["predict_model"][0]
    assert "results/k/ingest/probe.parquet" in jobs["train"]["train_head"][0]
