"""evoke.config: config layers (config.yaml, --configfile, --config), typing of untyped
--config values by the schema, and errors that name where a value came from."""

from __future__ import annotations

import pytest

from evoke.config import ConfigError, coerce, load_schema, merge, source_of, validate_layers


def test_untyped_values_are_typed_by_the_schema():
    schema = load_schema()
    given = {  # what Snakemake's parser hands over for --config frames='{rate_hz: 0.5}' ...
        "shard_size": 20,
        "dataset": 2024,
        "frames": {"rate_hz": "2", "short_side": "240", "keep": "false"},
        "labels": {"annotations": "null", "vce": {"min_annotator_agreement": "~"}},
        "ingest": {"rate_limit": "2M", "cookies": "null", "write_danmaku": "no"},
        "features": {"extractors": ["colour", "logmel"], "settings": {"efficientnet": {"variant": "b0"}}},
        "train": {"full": {"lr": "1e-3", "epochs": "3"}, "lightgbm": {"num_leaves": "7", "verbose": "-1"},
                  "feature_sets": [["colour", "motion"]], "multitask": "true"},
    }
    got = coerce(given, schema)
    assert got["dataset"] == "2024"
    assert got["frames"] == {"rate_hz": 2.0, "short_side": 240, "keep": False}
    assert isinstance(got["frames"]["rate_hz"], float) and isinstance(got["frames"]["short_side"], int)
    assert got["labels"] == {"annotations": None, "vce": {"min_annotator_agreement": None}}
    # a string key keeps a string; YAML 1.1 reads "no" as false
    assert got["ingest"] == {"rate_limit": "2M", "cookies": None, "write_danmaku": False}
    assert got["features"] == given["features"]
    assert got["train"]["full"] == {"lr": 0.001, "epochs": 3}
    assert got["train"]["lightgbm"] == {"num_leaves": 7, "verbose": -1}  # free-form: as YAML reads it
    assert got["train"]["multitask"] is True
    # a string that is not the expected type stays a string: the validator names it
    assert coerce({"frames": {"rate_hz": "fast"}}, schema) == {"frames": {"rate_hz": "fast"}}
    assert coerce({"shard_size": "2.5"}, schema) == {"shard_size": "2.5"}  # not an integer
    assert coerce({"ingest": {"cookies": "null"}}, {"properties": {"ingest": {"properties": {
        "cookies": {"type": "string"}}}}}) == {"ingest": {"cookies": "null"}}


def test_layers_merge_key_by_key_and_later_wins():
    base = {"frames": {"rate_hz": 1.0, "short_side": 360}, "features": {"extractors": ["colour"]}}
    assert merge(base, {"frames": {"rate_hz": 2.0}, "features": {"extractors": ["motion"]}}) == {
        "frames": {"rate_hz": 2.0, "short_side": 360}, "features": {"extractors": ["motion"]}}
    assert base["frames"]["rate_hz"] == 1.0  # not changed in place
    layers = [("config.yaml", base), ("--config", {"frames": {"rate_hz": 2.0}})]
    assert source_of(("frames", "rate_hz"), layers) == "--config"
    assert source_of(("frames", "short_side"), layers) == "config.yaml"
    assert source_of(("frames", "backend"), layers) == "--config"  # nearest key above it
    assert source_of(("ingest", "retries"), layers) == "the schema's defaults"


def test_a_nested_override_keeps_the_rest_of_the_block():
    cfg = validate_layers([
        ("config.yaml", {"frames": {"short_side": 240}, "labels": {"annotations": "ann"}}),
        ("--configfile demo.yaml", {"manifest": "data/x.csv", "shard_size": 20}),
        ("--config", {"frames": {"rate_hz": "0.5"}, "labels": {"annotations": "null"}}),
    ])
    assert cfg["frames"] == {"short_side": 240, "rate_hz": 0.5, "backend": "pyav", "keep": True}
    assert cfg["labels"]["annotations"] is None
    assert cfg["dataset"] == "x" and cfg["shard_size"] == 20


def test_errors_name_the_layer_each_bad_value_came_from():
    with pytest.raises(ConfigError) as err:
        validate_layers([
            ("config.yaml", {"frames": {"fps": 2}, "manifest": "m.csv"}),
            ("--configfile mine.yaml", {"ingest": {"retries": -1}}),
            ("--config", {"frames": {"rate_hz": "-1"}, "shard_size": "x"}),
        ])
    lines = str(err.value).splitlines()[1:]
    assert [line.strip() for line in lines] == [
        "config.yaml: frames: Additional properties are not allowed ('fps' was unexpected)",
        "--config: frames.rate_hz: -1.0 is less than or equal to the minimum of 0",
        "--configfile mine.yaml: ingest.retries: -1 is less than the minimum of 0",
        "--config: shard_size: 'x' is not of type 'integer'",
    ]


def test_a_manifest_name_that_is_no_dataset_name_says_what_to_set():
    with pytest.raises(ConfigError, match=r"the manifest's file name \(my videos\.csv; set dataset=NAME\): "
                                          r"dataset: 'my videos' does not match"):
        validate_layers([("--config", {"manifest": "my videos.csv"})])
    assert validate_layers([("--config", {"manifest": "my videos.csv", "dataset": "mine"})])["dataset"] == "mine"


def test_no_manifest_says_how_to_get_one():
    with pytest.raises(ConfigError) as err:
        validate_layers([("config.yaml", {"shard_size": 200}), ("--config", {})])
    text = str(err.value)
    assert "no manifest given" in text and "video_id, source, split" in text
    assert "--config dataset=NAME manifest=FILE" in text and "bash scripts/demo.sh" in text
