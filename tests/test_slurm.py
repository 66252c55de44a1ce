"""The workflow through `--profile slurm` on a real single-node SLURM (scripts/slurm_local.sh).

Needs root and the Debian packages slurmctld, slurmd, slurm-client and munge
(`EVOKE_WITH_SLURM=1 bash scripts/setup.sh`). Where it cannot run it says why
and skips; in CI (`CI=true`) it fails instead, so a missing SLURM never passes
silently.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import polars as pl
import pytest

from conftest import MEGAMIND, REPO, VTEST, ffmpeg, require_media

pytestmark = pytest.mark.slow
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
SLURM_SCRIPT = REPO / "scripts" / "slurm_local.sh"
# no accounting database on the local SLURM: poll with squeue, and soon (the
# shipped profile keeps the plugin's defaults, right for real clusters)
LOCAL_OVERRIDES = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "5"]
WORKFLOW_FILES = ("Snakefile", "workflow", "config.yaml", "slurm")


def why_slurm_cannot_run() -> str | None:
    """Why the local SLURM cannot be started on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (SLURM daemons and /etc/slurm/slurm.conf); CI runs as root"
    missing = [b for b in ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scontrol")
               if shutil.which(b) is None]
    if missing:
        return (f"{', '.join(missing)} not installed: EVOKE_WITH_SLURM=1 bash scripts/setup.sh "
                "(Debian packages slurmctld slurmd slurm-client munge)")
    try:
        __import__("snakemake_executor_plugin_slurm")
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed in this environment"
    return None


def unavailable(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the SLURM test must run in CI but cannot: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def slurm():
    """A running single-node SLURM; yields the environment that talks to it."""
    reason = why_slurm_cannot_run()
    if reason:
        unavailable(reason)
    # munged needs every parent of its socket folder world-executable: not tmp_path
    root = Path(tempfile.mkdtemp(prefix="evoke-slurm-", dir="/tmp"))
    root.chmod(0o755)
    env = dict(os.environ, SLURM_CONF=str(root / "etc" / "slurm.conf"),
               EVOKE_SLURMCTLD_PORT=str(free_port()), EVOKE_SLURMD_PORT=str(free_port()))
    try:
        start = subprocess.run(["bash", str(SLURM_SCRIPT), "start", str(root)], env=env,
                               capture_output=True, text=True, timeout=180)
        if start.returncode != 0:
            logs = "".join(f"\n--- {p}\n{p.read_text()[-2000:]}" for p in sorted((root / "log").glob("*.log")))
            pytest.fail(f"local SLURM did not start:\n{start.stderr}{logs}")
        yield {"root": root, "env": env}
    finally:
        subprocess.run(["bash", str(SLURM_SCRIPT), "stop", str(root)], env=env,
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """Two short clips of real media: an AVI without audio by path, an AVI with audio by file:// URL."""
    require_media()
    d = tmp_path_factory.mktemp("slurm-media")
    ffmpeg("-i", str(VTEST), "-t", "4", "-c", "copy", str(d / "vtest4.avi"))
    ffmpeg("-i", str(MEGAMIND), "-t", "3", "-c", "copy", str(d / "mega3.avi"))
    m = d / "manifest.csv"
    m.write_text("video_id,source,split\n"
                 f"vtest,{d / 'vtest4.avi'},train\n"
                 f"megamind,{(d / 'mega3.avi').as_uri()},test\n")
    return m


def workflow_copy(dest: Path) -> Path:
    """The repo's workflow files (with the profile folder) in a fresh working directory."""
    dest.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / name)
    return dest


def run_snakemake(cwd: Path, args: list[str], env=None, timeout=600) -> subprocess.CompletedProcess:
    proc = subprocess.run([SNAKEMAKE, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed in {cwd}:\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned_jobs(log: str) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(rule, wildcards, resources) of every job Snakemake printed (ran, or planned in a dry run)."""
    jobs, rule, wildcards = [], None, {}
    for line in log.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            rule, wildcards = m.group(1), {}
        elif rule and (m := re.match(r"^\s+wildcards: (.*)", line)):
            wildcards = dict(kv.split("=", 1) for kv in m.group(1).split(", "))
        elif rule and (m := re.match(r"^\s+resources: (.*)", line)):
            jobs.append((rule, wildcards, dict(kv.split("=", 1) for kv in m.group(1).split(", "))))
    return jobs


def requested_resources(log: str) -> dict[tuple[str, str], dict[str, str]]:
    """(rule, shard) -> the resources Snakemake printed for each job it ran."""
    return {(rule, wildcards.get("shard", "")): res for rule, wildcards, res in planned_jobs(log)}


def slurm_jobs(env: dict, workdir: Path) -> list[dict[str, str]]:
    """Every job SLURM ran from ``workdir``, as `scontrol show job` reports it."""
    out = subprocess.run(["scontrol", "show", "job", "-o"], env=env, capture_output=True,
                         text=True, check=True).stdout
    jobs = []
    for line in out.splitlines():
        fields = dict(m.groups() for m in re.finditer(r"(\S+?)=(\S*)", line))
        if fields.get("WorkDir") == str(workdir):
            jobs.append(fields)
    return jobs


def minutes(timelimit: str) -> int:
    """SLURM's [days-]hh:mm:ss as minutes."""
    days, _, hms = timelimit.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + (s > 0)


def probe_rows(res: Path) -> list[dict]:
    df = pl.read_parquet(res / "ingest" / "probe.parquet")
    drop = [c for c in df.columns if c.endswith("_path") or c in ("source",) or "time" in c]
    return df.drop(drop).sort("video_id").to_dicts()


def frames_arrays(res: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for path in sorted((res / "frames").glob("*.h5")):
        with h5py.File(path) as f:
            for vid, g in f.items():
                out[vid] = {k: g[k][()] for k in g}
    return out


def test_demo_through_slurm_profile_equals_local_run(slurm, manifest, tmp_path, request):
    config = ["--config", f"manifest={manifest}", "dataset=slurmtest", "shard_size=1"]
    # the local run to compare with goes on beside the SLURM one (its own folder), in the
    # SLURM run's waits for the scheduler and its status checks
    local = workflow_copy(tmp_path / "local")
    with (tmp_path / "local.log").open("w") as log:  # a file: a full pipe would stall it
        local_run = subprocess.Popen([SNAKEMAKE, "ingest", "frames", "--cores", "2", *config], cwd=local,
                                     stdout=log, stderr=subprocess.STDOUT, text=True)
    request.addfinalizer(lambda: local_run.poll() is None and local_run.kill())
    on_slurm = workflow_copy(tmp_path / "on_slurm")
    # what a cluster user types at the repo root, plus the two local-SLURM overrides
    proc = run_snakemake(on_slurm, ["ingest", "frames", "--cores", "32", "--profile", "slurm",
                                    *LOCAL_OVERRIDES, *config], env=slurm["env"])
    log = proc.stdout + proc.stderr
    assert "Using profile slurm" in log

    requested = {k: v for k, v in requested_resources(log).items() if k[0].endswith("_shard")}
    assert {r for r, _ in requested} == {"ingest_shard", "frames_shard"}
    assert len(requested) == 2 * 2, requested  # 2 shards of one video, two stages

    ran = slurm_jobs(slurm["env"], on_slurm)
    by_job = {}
    for job in ran:
        m = re.fullmatch(r"rule_(\w+?)_wildcards_(s\d+)", job["Comment"])
        assert m, job["Comment"]
        by_job[m.groups()] = job
    # every shard job went through SLURM (the merges are local rules) ...
    assert set(by_job) == set(requested)
    for key, job in by_job.items():
        want = requested[key]
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", (key, job)
        # ... with the memory, time and CPUs the rule asked for
        assert job["MinMemoryNode"] == f"{want['mem_mb']}M", (key, job["MinMemoryNode"], want)
        assert minutes(job["TimeLimit"]) == int(want["runtime"]), (key, job["TimeLimit"], want)
        assert int(job["NumCPUs"]) == int(want["cpus_per_task"]), (key, job["NumCPUs"], want)
        assert job["Partition"] == "local"
    # the controller's job completion log keeps the record after scontrol forgets it
    jobcomp = (slurm["root"] / "log" / "jobcomp.log").read_text()
    for job in by_job.values():
        assert re.search(rf"JobId={job['JobId']} .*JobState=COMPLETED.*WorkDir={re.escape(str(on_slurm))} ",
                         jobcomp)

    if local_run.wait(timeout=600) != 0:
        raise AssertionError(f"the local run failed:\n{(tmp_path / 'local.log').read_text()[-6000:]}")

    res_slurm, res_local = on_slurm / "results" / "slurmtest", local / "results" / "slurmtest"
    assert probe_rows(res_slurm) == probe_rows(res_local)
    assert all(r["status"] == "ok" for r in probe_rows(res_slurm))
    idx = [pl.read_parquet(r / "frames" / "index.parquet").sort("video_id") for r in (res_slurm, res_local)]
    assert idx[0].equals(idx[1]) and idx[0].height == 2
    a, b = frames_arrays(res_slurm), frames_arrays(res_local)
    assert sorted(a) == sorted(b) == ["megamind", "vtest"]
    for vid in a:
        assert sorted(a[vid]) == sorted(b[vid])
        for key in a[vid]:
            np.testing.assert_array_equal(a[vid][key], b[vid][key], err_msg=f"{vid}/{key}")


@pytest.mark.parametrize(("device", "backend"), [("auto", "nvdec"), ("cpu", "pyav")])
def test_profile_asks_a_gpu_only_for_torch_extractors_and_nvdec_frames(manifest, tmp_path, device, backend):
    """A dry run through the profile (no SLURM needed): torch extractors' shard jobs run in
    features_shard_gpu with gpu=1 and the profile's CPUs per GPU; CPU-only extractors, and
    every extractor under features.device: cpu, in features_shard without a GPU. The frames
    shards ask for a GPU under frames.backend: nvdec (it decodes on one), for none under pyav."""
    import yaml

    wd = workflow_copy(tmp_path / "wf")
    cfg = yaml.safe_load((wd / "config.yaml").read_text())
    cfg.update(dataset="gputest", manifest=str(manifest), shard_size=1)
    cfg["frames"]["backend"] = backend
    cfg["features"].update(extractors=["colour", "logmel", "vggish", "facenet"], device=device)
    # missing weights stop planning (before any job): VGGish's, seeded random, through the config
    import torch

    from evoke.features.vggish import build_network

    torch.manual_seed(0)
    torch.save(build_network(final_relu=False).state_dict(), tmp_path / "vggish.pt")
    cfg["features"]["weights"] = {"vggish": str(tmp_path / "vggish.pt")}
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(wd, ["features", "-n", "--cores", "32", "--profile", "slurm"])
    planned = planned_jobs(proc.stdout + proc.stderr)
    frames = [res for rule, _, res in planned if rule == "frames_shard"]
    assert len(frames) == 2, planned  # one video per shard
    for res in frames:
        if backend == "nvdec":  # the CPUs stay the rule's threads: NVDEC's frames are converted on them
            assert (res["gpu"], res["cpus_per_task"]) == ("1", "2") and "cpus_per_gpu" not in res, res
        else:
            assert "gpu" not in res and res["cpus_per_task"] == "2", res
    jobs = [(rule, wc["extractor"], res) for rule, wc, res in planned if rule.startswith("features_shard")]
    assert sorted(e for _, e, _ in jobs) == sorted(["colour", "logmel", "vggish", "facenet"] * 2)
    on_gpu = {"vggish", "facenet"} if device == "auto" else set()
    for rule, extractor, res in jobs:
        if extractor in on_gpu:
            assert rule == "features_shard_gpu", (extractor, rule)
            assert (res["gpu"], res["cpus_per_gpu"], res["cpus_per_task"]) == ("1", "8", "0"), res
        else:
            assert rule == "features_shard", (extractor, rule)
            assert "gpu" not in res and "cpus_per_gpu" not in res and res["cpus_per_task"] == "2", res
