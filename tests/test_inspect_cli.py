import subprocess
import sys

import h5py
import numpy as np
import polars as pl

from evoke.cli import main


def test_inspect_hdf5_and_parquet(tmp_path, capsys):
    h5 = tmp_path / "f.h5"
    with h5py.File(h5, "w") as f:
        f.attrs["stage"] = "frames"
        g = f.create_group("vid1")
        g.create_dataset("frames", data=np.full((3, 4, 5, 3), 9, np.uint8))
        g.create_dataset("timestamps_s", data=np.arange(3.0))
        g.attrs["rate_hz"] = 1.0
    pq = tmp_path / "t.parquet"
    pl.DataFrame({"video_id": ["a", "b"], "duration_s": [1.5, 2.0]}).write_parquet(pq)
    assert main(["inspect", str(h5), str(pq)]) == 0
    out = capsys.readouterr().out
    assert "@stage = frames" in out
    assert "frames: dataset (3, 4, 5, 3) uint8" in out and "mean=9" in out
    assert "timestamps_s: dataset (3,) float64" in out and "[0. 1. 2.]" in out
    assert "@rate_hz = 1" in out
    assert "2 rows, 2 columns" in out and "duration_s: Float64" in out


def test_cli_errors_are_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "m.csv"
    bad.write_text("video_id,source,split\n../x,/a.mp4,train\n")
    proc = subprocess.run([sys.executable, "-m", "evoke", "manifest", "check", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"evoke: error: {bad}: invalid manifest")
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "evoke", "inspect", str(tmp_path / "nope.h5")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no such file" in proc.stderr


def test_frames_extract_command(media, tmp_path):
    out = tmp_path / "one.h5"
    assert main(["frames", "extract", "--input", str(media["noaudio"]), "--out", str(out),
                 "--config", str(tmp_path / "none.yaml")]) == 0
    with h5py.File(out) as f:
        assert f["noaudio/frames"].shape == (5, 192, 256, 3)


def test_building_the_cli_parser_does_not_import_torch():
    # every workflow job starts the CLI: torch would cost seconds and ~600 MB each time
    code = "import sys, evoke.cli; evoke.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _parsers(parser, path=("evoke",)):
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_option_has_help_and_no_docstring_markup_leaks():
    import argparse

    from evoke.cli import build_parser

    missing, markup = [], []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if action.help is None and not isinstance(action, argparse._SubParsersAction):
                missing.append(f"{' '.join(path)} {action.option_strings or action.dest}")
        text = parser.format_help()
        if "``" in text or ":func:" in text or ":mod:" in text or "\n::" in text:
            markup.append(" ".join(path))
    assert not missing, missing
    assert not markup, markup


def test_labels_list_names_the_command_of_every_builder(capsys):
    from evoke.cli import build_parser
    from evoke.labels import LABEL_BUILDERS
    from evoke.labels.cli import BUILDER_COMMANDS

    assert set(BUILDER_COMMANDS) == set(LABEL_BUILDERS)
    commands = {path for path, _ in _parsers(build_parser())}
    for command in BUILDER_COMMANDS.values():
        assert tuple(command.split()) in commands, command
    assert main(["labels", "list"]) == 0
    assert "v2v_pairs" in (out := capsys.readouterr().out) and "(run by: evoke labels v2v-votes)" in out


def test_manifest_check_takes_the_shard_size_from_the_config(tmp_path, capsys, monkeypatch):
    m = tmp_path / "m.csv"
    m.write_text("video_id,source,split\n" + "".join(f"v{i},/x/{i}.mp4,train\n" for i in range(5)))
    monkeypatch.chdir(tmp_path)
    assert main(["manifest", "check", str(m)]) == 0  # no config.yaml here: the schema's 200
    assert "5 videos, 1 shards of 200" in capsys.readouterr().out
    (tmp_path / "config.yaml").write_text("shard_size: 2\n")
    assert main(["manifest", "check", str(m)]) == 0
    assert "5 videos, 3 shards of 2" in capsys.readouterr().out
    assert main(["manifest", "check", str(m), "--shard-size", "5"]) == 0
    assert "1 shards of 5" in capsys.readouterr().out
    (tmp_path / "config.yaml").write_text("shard_size: 0\n")
    assert main(["manifest", "check", str(m)]) == 2
    assert "config.yaml: shard_size: 0 is less than the minimum of 1" in capsys.readouterr().err
