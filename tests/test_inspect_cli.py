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
        f.attrs["config"] = "x" * 500
        g = f.create_group("vid1")
        g.create_dataset("frames", data=np.full((3, 4, 5, 3), 9, np.uint8))
        g.create_dataset("timestamps_s", data=np.arange(3.0))
        g.create_dataset("mask", data=np.array([True, False, True]))
        g.create_dataset("boxes_valid", data=np.array([[True, False], [True, True], [False, False]]))
        g.create_dataset("values", data=np.array([[0.123456, 10.0], [0.5, 30.0], [1 / 3, 20.0]], np.float32))
        g.attrs["dim_names"] = np.array(["brightness", "loudness"], dtype=h5py.string_dtype())
        g.attrs["rate_hz"] = 1.0
    pq = tmp_path / "t.parquet"
    pl.DataFrame({"video_id": ["a", "b"], "duration_s": [1.5, 2.0]}).write_parquet(pq)
    assert main(["inspect", str(h5), str(pq)]) == 0
    out = capsys.readouterr().out
    assert "@stage = frames" in out
    # a long value is cut, and the cut said
    assert "@config = " + "x" * 160 + "... (340 more characters; --all shows them)" in out
    assert "frames: (3, 4, 5, 3) uint8" in out and "[0]: mean 9, min 9, max 9 over 60 values" in out
    assert "timestamps_s: (3,) float64" in out and "[0, 1, 2]" in out
    assert "mask: (3,) bool\n      2 of 3 true" in out
    assert "3 of 6 true (2, 1 per slot)" in out
    # (T, D) values: one line per named dimension, 4 significant digits
    rows = [line.split() for line in out.splitlines()]
    assert ["brightness", "0.1235", "0.3189", "0.1235", "0.5"] in rows
    assert ["loudness", "10", "20", "10", "30"] in rows
    assert "@rate_hz = 1" in out
    assert "2 rows, 2 columns" in out and "duration_s: Float64" in out
    assert main(["inspect", "--all", str(h5)]) == 0
    assert "x" * 500 in capsys.readouterr().out


def test_inspect_says_what_it_leaves_out(tmp_path, capsys):
    h5 = tmp_path / "many.h5"
    with h5py.File(h5, "w") as f:
        for i in range(40):
            f.create_group(f"v{i:02d}").create_dataset("values", data=np.zeros((2, 30), np.float32))
    assert main(["inspect", str(h5)]) == 0
    out = capsys.readouterr().out
    assert "... 10 datasets, 10 groups more not shown (--all shows everything)" in out
    assert "... 18 more dimensions (--all shows every one)" in out
    assert main(["inspect", "--all", str(h5)]) == 0
    out = capsys.readouterr().out
    assert "more not shown" not in out and "v39/" in out and "[29]" in out

    table = tmp_path / "wide.parquet"
    pl.DataFrame({f"column_with_a_long_name_{i}": [i * 1.5, None] for i in range(12)}
                 | {"text": ["y" * 300, "short"]}).write_parquet(table)
    assert main(["inspect", str(table), "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "first 1 of 2 rows (-n/--rows shows more), one column a line" in out
    assert "  column_with_a_long_name_11 (Float64)  16.5" in out
    assert "y" * 160 + "... (140 more characters; --all shows them)" in out
    assert main(["inspect", str(table), "--columns", "text,column_with_a_long_name_0"]) == 0
    out = capsys.readouterr().out
    assert "columns text, column_with_a_long_name_0" in out and "column_with_a_long_name_1 " not in out.split(
        "first")[1]
    assert main(["inspect", str(table), "--columns", "nope"]) == 2
    assert "no column nope (columns: column_with_a_long_name_0" in capsys.readouterr().err


def test_inspect_a_folder_lists_its_artifacts(tmp_path, capsys):
    (tmp_path / "ingest").mkdir()
    pl.DataFrame({"video_id": ["a", "b", "c"]}).write_parquet(tmp_path / "ingest" / "probe.parquet")
    with h5py.File(tmp_path / "s00000.h5", "w") as f:
        f.create_group("a")
        f.create_group("b")
    (tmp_path / ".hidden.parquet").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not an artifact")
    assert main(["inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path}/ (folder): 2 artifacts" in out
    rows = [line.split() for line in out.splitlines()[1:]]
    assert rows[0][0] == "ingest/probe.parquet" and rows[0][-4:] == ["3", "rows,", "1", "columns"]
    assert rows[1][0] == "s00000.h5" and rows[1][-2:] == ["2", "groups"]


def test_features_carry_their_dimension_names(media, tmp_path, capsys):
    out = tmp_path / "colour.h5"
    assert main(["features", "extract", "--extractor", "colour", "--input", str(media["noaudio"]),
                 "--out", str(out), "--config", str(tmp_path / "none.yaml")]) == 0
    with h5py.File(out) as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f["noaudio"].attrs["dim_names"]]
        a = f["noaudio"].attrs  # the frames settings, as the features stage records them
        assert (a["frames_rate_hz"], a["frames_short_side"], a["frames_backend"]) == (1.0, 360, "pyav")
        assert len(a["frames_config_hash"]) > 0
    assert len(names) == 23 and names[:5] == ["brightness", "contrast", "saturation", "colourfulness", "warmth"]
    assert names[5] == "hue_000_020" and names[-1] == "hue_340_360"
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    assert "      colourfulness " in capsys.readouterr().out


def test_every_extractor_names_its_dimensions():
    from evoke.features import EXTRACTORS, create_extractor

    # evoke's own extractors (tests may register others in the same session)
    for name in sorted(n for n, cls in EXTRACTORS.items() if cls.__module__.startswith("evoke.features.")):
        if name == "opensmile_egemaps":
            continue  # its names come from the opensmile package (optional), once loaded
        ext = create_extractor(name, None)
        names = ext.dim_names
        assert len(names) == ext.step_shape[-1] and len(set(names)) == len(names), name
    logmel = create_extractor("logmel", None).dim_names
    assert logmel[0] == "mel_mean_00" and logmel[64] == "mel_std_00" and logmel[-1] == "rms_db"


def test_inspect_piped_to_head_ends_quietly(tmp_path):
    table = tmp_path / "long.csv"
    table.write_text("a,b\n" + "".join(f"{i},{i}\n" for i in range(20000)))
    proc = subprocess.run(f"{sys.executable} -m evoke inspect -n 20000 {table} | head -n 2", shell=True,
                          capture_output=True, text=True)
    assert proc.stdout.count("\n") == 2 and proc.stderr == "", proc.stderr


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
