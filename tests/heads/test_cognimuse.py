"""The COGNIMUSE networks (Hayat et al. 2021) against the paper's layer sizes: structure and
parameter counts, the class-weighted log-loss with the Lasso penalty against NumPy, branch
masking, the text branch's shapes, the vocabulary from the training split only, modalities,
``evoke train describe``, and a run of viewer_valence with subtitles through ``evoke predict``."""

import json

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn

from evoke.heads.cognimuse import PAD, UNK, CognimuseNet, TextBranch, Vocabulary, class_weights, tokenize, \
    weighted_log_loss
from evoke.heads.full import FullConfig, FullConfigError
from evoke.heads.models import count_parameters

from .conftest import FAST, FEATURES

I3D = 1024  # I3D Mixed-5c, global-average-pooled


def linear_shapes(module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


def dense_params(widths) -> int:
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def test_single_task_network_has_the_papers_layers():
    v, e, f, k = 500, 128, 128, 3
    net = CognimuseNet(I3D, v)
    text_out = f * 3  # 18 words -> conv 16 -> pool 8 -> conv 6 -> pool 3
    assert net.text.out_dim == text_out and net.fusion_dim == I3D + text_out
    assert linear_shapes(net) == [(I3D + text_out, 1024), (1024, 512), (512, 256), (256, 1)]
    text = v * e + (e * f * k + f) + (f * f * k + f)
    assert count_parameters(net.text) == text
    assert count_parameters(net) == text + dense_params([I3D + text_out, 1024, 512, 256, 1])


def test_multi_task_network_has_shared_layers_and_a_branch_per_viewer():
    n = 8  # 7 viewers + the average viewer, as on COGNIMUSE
    net = CognimuseNet(I3D, 0, multitask=True, n_branches=n)  # visual only
    assert net.text is None and net.fusion_dim == I3D
    assert linear_shapes(net.trunk) == [(I3D, 2048), (2048, 1024)]
    assert len(net.branches) == n
    for b in net.branches:
        assert linear_shapes(b) == [(1024, 512), (512, 256), (256, 128), (128, 1)]
    assert count_parameters(net) == dense_params([I3D, 2048, 1024]) + n * dense_params([1024, 512, 256, 128, 1])
    p = net({"visual": torch.randn(5, I3D)})
    assert p.shape == (5, n) and bool(((p > 0) & (p < 1)).all())


def test_text_branch_reads_18_padded_words_and_unknown_words_are_unk():
    train = ["Don't go there, John!", "go go go", None, ""]
    vocab = Vocabulary.build(train, max_size=10)
    assert vocab.words[:2] == ["<pad>", "<unk>"] and vocab.words[2] == "go"  # most frequent first
    assert tokenize("Don't GO!") == ["don't", "go"]
    long = " ".join(f"w{i}" for i in range(30))
    words = vocab.encode(["go John", "never seen", long, None], 18)
    assert words.shape == (4, 18) and words.dtype == np.int64
    assert words[0, :2].tolist() == [vocab.words.index("go"), vocab.words.index("john")]
    assert (words[0, 2:] == PAD).all()  # padded at the end
    assert words[1, :2].tolist() == [UNK, UNK] and (words[2] == UNK).all() and (words[3] == PAD).all()
    branch = TextBranch(len(vocab), 18, embed_dim=8, filters=4)
    out = branch(torch.from_numpy(words))
    assert out.shape == (4, 4 * 3)
    assert torch.equal(branch.embedding.weight[PAD], torch.zeros(8))  # padding embeds to zero
    with pytest.raises(ValueError, match="too short"):
        TextBranch(10, 6, kernel_size=3)


def np_loss(p, y, m, w, weights, l1):
    per = -(y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log(1 - p), -100))
    per = per * np.where(y >= 0.5, w[:, 1], w[:, 0])
    return sum((per[:, k] * m[:, k]).sum() / max(m[:, k].sum(), 1) for k in range(y.shape[1])) + \
        l1 * sum(np.abs(x).sum() for x in weights)


def test_class_weighted_log_loss_and_lasso_against_numpy():
    rng = np.random.default_rng(0)
    y = (rng.random((12, 3)) < [0.2, 0.5, 0.9]).astype(np.float64)
    m = rng.random((12, 3)) < 0.8
    m[:, 2] = False  # a viewer who annotated nothing in the batch: contributes 0
    w = class_weights(y, m)
    for k in range(2):
        n, pos = m[:, k].sum(), (m[:, k] & (y[:, k] == 1)).sum()
        assert w[k].tolist() == pytest.approx([n / (2 * (n - pos)), n / (2 * pos)])
    assert w[2].tolist() == [1.0, 1.0]
    net = CognimuseNet(6, 0, multitask=True, n_branches=3, shared_layers=(5,), branch_layers=(4,))
    x = torch.randn(12, 6)
    p = net({"visual": x})
    got = weighted_log_loss(p, torch.tensor(y, dtype=torch.float32), torch.tensor(m, dtype=torch.float32),
                            torch.tensor(w, dtype=torch.float32), net, 1e-3)
    want = np_loss(p.detach().double().numpy(), y, m, w, [t.detach().double().numpy() for t in net.dense_weights()],
                   1e-3)
    assert float(got.detach()) == pytest.approx(want, rel=1e-5)
    assert len(net.dense_weights()) == 1 + 3 * 2  # the trunk layer, each branch its layer and output
    # unweighted, everything labelled: plain mean log-loss
    got = weighted_log_loss(p[:, :1], torch.tensor(y[:, :1], dtype=torch.float32), None, None)
    want = np_loss(p[:, :1].detach().double().numpy(), y[:, :1], np.ones((12, 1)), np.ones((1, 2)), [], 0)
    assert float(got.detach()) == pytest.approx(want, rel=1e-5)


def test_a_branch_gets_no_gradient_from_units_its_viewer_did_not_annotate():
    torch.manual_seed(0)
    net = CognimuseNet(6, 30, multitask=True, n_branches=3, shared_layers=(8,), branch_layers=(4, 3), max_words=8,
                       embed_dim=4, text_filters=2, kernel_size=2)
    x = {"visual": torch.randn(10, 6), "words": torch.randint(0, 30, (10, 8))}
    y = torch.randint(0, 2, (10, 3)).float()
    m = torch.ones(10, 3)
    m[:, 1] = 0  # viewer 1 annotated none of these units
    loss = weighted_log_loss(net(x), y, m, torch.ones(3, 2), net, l1=0.0)
    loss.backward()
    grad = lambda mod: sum(float(p.grad.abs().sum()) for p in mod.parameters())  # noqa: E731
    assert grad(net.branches[1]) == 0.0
    assert grad(net.branches[0]) > 0 and grad(net.branches[2]) > 0 and grad(net.trunk) > 0 and grad(net.text) > 0


def test_modalities_and_network_settings():
    both = FullConfig.for_task("viewer_valence", {})
    assert both.network == "cognimuse" and both.modalities == "both" and both.train.lr == 1e-3
    text = FullConfig.for_task("viewer_valence", {"tasks": {"viewer_valence": {"modalities": "text"}}})
    from evoke.heads.cognimuse import build_net

    t = build_net(text, 1024, 50, False, 1)
    assert t.init_args["visual_dim"] == 0 and t.text is not None and t.fusion_dim == t.text.out_dim
    v = build_net(FullConfig.for_task("viewer_valence", {"modalities": "visual"}), 1024, 50, False, 1)
    assert v.text is None and v.fusion_dim == 1024
    with pytest.raises(FullConfigError, match="modalities 'audio'"):
        FullConfig.for_task("viewer_valence", {"modalities": "audio"})
    with pytest.raises(FullConfigError, match="network cognimuse is the viewer_valence"):
        FullConfig.for_task("eev", {"network": "cognimuse"})
    # the EEV network stays an option for viewer_valence, with its own loss
    eev = FullConfig.for_task("viewer_valence", {"network": "eev"})
    assert eev.network == "eev" and eev.loss == ""


def test_describe_shows_the_cognimuse_networks(capsys, tmp_path):
    from evoke.cli import main

    cfg = tmp_path / "config.yaml"
    cfg.write_text("manifest: m.csv\ntrain:\n  full:\n    tasks:\n      viewer_valence: {modalities: text}\n")
    assert main(["train", "describe", "--task", "viewer_valence", "--head", "full_multitask", "--features", "i3d",
                 "--branches", "8", "--json", "--config", str(cfg)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["network"] == "cognimuse" and d["modalities"] == "text" and d["visual"] is None
    assert d["layers"] == {"shared": [2048, 1024], "branch": [512, 256, 128]} and d["branches"] == 8
    assert d["text"]["max_words"] == 18 and d["loss"] == "bce_class_weighted" and d["l1"] == 1e-5
    assert "modalities" in d["settings_from_config"] and "network" in d["settings_from_task_defaults"]
    assert d["n_parameters"] == count_parameters(CognimuseNet(**d["init_args"]))
    assert main(["train", "describe", "--task", "viewer_valence", "--head", "full", "--features", "i3d"]) == 0
    text = capsys.readouterr().out
    assert "single-task" in text and "visual: i3d 1024" in text and "1024 -> 512 -> 256 (relu) -> 1, sigmoid" in text


def test_describe_takes_the_multitask_branches_from_the_data_or_says_it_cannot(syn_dir, capsys, tmp_path):
    """MT's branches are the label table's viewers + the average viewer: counted with --dataset-dir,
    given with --branches, and without either not guessed (the parameters per branch instead)."""
    from evoke.cli import main

    args = ["train", "describe", "--task", "viewer_valence", "--head", "full_multitask", "--features", "colour",
            "--json"]
    assert main(args) == 0
    unknown = json.loads(capsys.readouterr().out)
    assert unknown["branches"] is None and unknown["n_parameters"] is None
    assert unknown["branches_from"].startswith("the data: one per viewer")
    assert main(args[:-1]) == 0
    assert "branches from the data" in capsys.readouterr().out

    table = syn_dir / "labels" / "viewer_valence_segments.parquet"  # units: segment, the default
    viewers = [c for c in pl.read_parquet(table).columns if c.startswith("valence_bin__")]
    assert len(viewers) >= 2
    assert main([*args, "--dataset-dir", str(syn_dir)]) == 0
    counted = json.loads(capsys.readouterr().out)
    assert counted["branches"] == len(viewers) + 1 == counted["init_args"]["n_branches"]
    assert counted["branches_from"] == f"{table}: {len(viewers)} viewer(s) + the average viewer"
    for d in (counted, unknown):  # without the branches + K per branch: the network's count
        k = counted["branches"]
        net = CognimuseNet(**{**d["init_args"], "n_branches": k})
        assert d["n_parameters_without_branches"] + k * d["n_parameters_per_branch"] == count_parameters(net)
    assert counted["n_parameters"] == count_parameters(CognimuseNet(**counted["init_args"]))
    assert main([*args, "--branches", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["branches_from"] == "--branches"
    # a dataset without the table: the task's own message, naming the path
    assert main([*args, "--dataset-dir", str(tmp_path)]) == 2
    assert str(tmp_path / "labels" / "viewer_valence_segments.parquet") in capsys.readouterr().err


# ------------------------------------------------------------------ a run with subtitles


WORDS = {1: ["wonderful", "happy", "laugh", "sunny"], 0: ["terrible", "dark", "cry", "storm"]}


@pytest.fixture(scope="module")
def subtitled(syn_dir, tmp_path_factory):
    """The synthetic dataset's segments with subtitle text whose words follow the average
    valence (one unit in five with a word no training segment has)."""
    d = tmp_path_factory.mktemp("subtitled") / "d"
    d.mkdir(parents=True)
    for sub in ("features", "ingest"):
        (d / sub).symlink_to(syn_dir / sub)
    (d / "labels").mkdir()
    seg = pl.read_parquet(syn_dir / "labels" / "viewer_valence_segments.parquet")
    rng = np.random.default_rng(3)
    text = [" ".join(rng.choice(WORDS[int(b)], 3)) + (" zebra" if i % 5 == 0 else "")
            for i, b in enumerate(seg["valence_bin"])]
    seg.with_columns(pl.Series("text", text)).write_parquet(d / "labels" / "viewer_valence_segments.parquet")
    (d / "labels" / "viewer_valence.parquet").symlink_to(syn_dir / "labels" / "viewer_valence.parquet")
    return d


def test_text_only_multitask_run_learns_from_subtitles_and_predict_reads_them(subtitled, tmp_path):
    from evoke.predict.run import predict_dataset
    from evoke.tasks import run_task

    small = {"epochs": 10, "batch_size": 16, "lr": 0.01, "patience": 4, "shared_layers": [64, 32],
             "branch_layers": [16, 8, 4], "embed_dim": 8, "text_filters": 8}
    settings = FAST | {"full": small | {"modalities": "text"}}
    rec = run_task("viewer_valence", "full_multitask", FEATURES, subtitled, tmp_path / "run", settings)
    acc = rec["metrics"]["test"]["accuracy"]["average"]
    assert acc > rec["baselines"]["majority_class"]["accuracy"]["average"] + 0.2 and acc > 0.85
    card = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    (part,) = card["parts"]
    assert part["kind"] == "cognimuse" and part["kwargs"]["visual_dim"] == 0
    words = json.loads((tmp_path / "run" / "model" / part["vocabulary"]).read_text())
    assert words[:2] == ["<pad>", "<unk>"] and set(words[2:]) <= set(WORDS[0] + WORDS[1] + ["zebra"])
    # the vocabulary is the training split's: a word only val/test segments have is not in it
    seg = pl.read_parquet(subtitled / "labels" / "viewer_valence_segments.parquet")
    split = dict(pl.read_parquet(subtitled / "ingest" / "probe.parquet").iter_rows())
    train_words = {w for v, t in seg.select("video_id", "text").iter_rows() if split[v] == "train" for w in t.split()}
    assert set(words[2:]) <= train_words
    # evoke predict scores the model's unit, the segments, each with its own words: the run's numbers
    assert card["unit"] == "segment" and card["segments"] == {"source": "cues"}
    pred = predict_dataset(tmp_path / "run", subtitled)
    pos = pred.join(seg.select("video_id", "segment", "start_s", "valence_bin"), on=["video_id", "segment", "start_s"])
    assert pos.height == seg.height == pred.height
    agree = ((pos["pred_average"] >= 0.5).cast(pl.Int8) == pos["valence_bin"]).mean()
    assert agree > 0.85
    trained = pl.read_parquet(tmp_path / "run" / "predictions.parquet")
    j = trained.join(pred, on=["video_id", "time_s"], suffix="_p")
    assert j.height == trained.height == rec["n"]["val"] + rec["n"]["test"]
    assert float((j["pred_average"] - j["pred_average_p"]).abs().max()) < 1e-6


def test_single_task_both_modalities_round_trips_through_a_saved_model(subtitled, tmp_path):
    from evoke.predict.run import predict_dataset
    from evoke.tasks import run_task

    small = {"epochs": 2, "batch_size": 32, "layers": [16, 8, 4], "embed_dim": 4, "text_filters": 4}
    settings = FAST | {"full": small, "viewer_valence": {"units": "second"}}
    rec = run_task("viewer_valence", "full", FEATURES, subtitled, tmp_path / "run", settings)
    card = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert [p["kind"] for p in card["parts"]] == ["cognimuse"] * 3  # the average viewer, a, b
    assert card["parts"][0]["kwargs"]["visual_dim"] == 11 and card["parts"][0]["kwargs"]["vocab_size"] > 2
    trained = pl.read_parquet(tmp_path / "run" / "predictions.parquet")
    pred = predict_dataset(tmp_path / "run", subtitled)
    j = trained.join(pred, on=["video_id", "time_s"], suffix="_p")
    assert j.height == trained.height == rec["n"]["val"] + rec["n"]["test"]
    for c in ("pred_average", "pred_a", "pred_b"):
        assert float((j[c] - j[f"{c}_p"]).abs().max()) < 1e-6


def test_the_eev_network_stays_an_option_for_viewer_valence(syn_dir, tmp_path):
    from evoke.tasks import run_task

    settings = FAST | {"full": {**FAST["full"], "epochs": 2, "network": "eev"}, "viewer_valence": {"units": "second"}}
    rec = run_task("viewer_valence", "full", FEATURES, syn_dir, tmp_path / "run", settings)
    card = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert [p["kind"] for p in card["parts"]] == ["full"] * 3 and card["parts"][0]["loss"] == "bce_mean"
    assert set(rec["info"]["history"]) == {"average", "a", "b"}


def test_train_heads_can_name_full_multitask_alone(tmp_path):
    """``train.heads: [full_multitask]`` is a valid config, and the workflow then plans the MT head
    of viewer_valence alone (not full, and nothing for tasks without it), whatever
    ``train.multitask`` says; with ``full`` named, ``multitask`` adds it as before."""
    import subprocess
    import sys
    from pathlib import Path

    from evoke.config import ConfigError, validate_config
    from evoke.heads import heads_to_train
    from evoke.tasks import TASKS

    for multitask in (True, False):
        cfg = validate_config({"manifest": "m.csv", "train": {"heads": ["full_multitask"], "multitask": multitask}})
        assert cfg["train"]["heads"] == ["full_multitask"]
        assert heads_to_train(TASKS["viewer_valence"].heads, ["full_multitask"], multitask) == ["full_multitask"]
    with pytest.raises(ConfigError, match="heads"):
        validate_config({"manifest": "m.csv", "train": {"heads": ["multitask"]}})
    vv = TASKS["viewer_valence"].heads
    assert heads_to_train(vv, ["linear", "full"], True) == ["linear", "full", "full_multitask"]
    assert heads_to_train(vv, ["linear", "full"], False) == ["linear", "full"]
    assert heads_to_train(vv, ["full_multitask", "full"], True) == ["full_multitask", "full"]
    assert heads_to_train(TASKS["vce"].heads, ["full_multitask", "linear"], True) == ["linear"]

    repo = Path(__file__).resolve().parents[2]
    demo = repo / "data" / "demo"
    if not (demo / "manifest.csv").is_file():
        pytest.fail(f"{demo / 'manifest.csv'} missing: run scripts/setup.sh (evoke demo build)")
    rows = (demo / "manifest.csv").read_text().splitlines()
    (tmp_path / "manifest.csv").write_text("\n".join([rows[0], *[r for r in rows if ",train," in r][:2]]) + "\n")
    (tmp_path / "config.yaml").write_text(
        f"dataset: mt\nmanifest: manifest.csv\nlabels:\n  annotations: {demo / 'annotations'}\n"
        "train:\n  tasks: [viewer_valence, vce]\n  heads: [full_multitask]\n  multitask: false\n")
    dry = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "--snakefile", str(repo / "Snakefile"),
                          "--directory", str(tmp_path), "--cores", "2", "-n", "train"],
                         capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    outputs = [f for line in dry.stdout.splitlines() if line.strip().startswith("output:")
               for f in line.split(":", 1)[1].strip().split(", ")]
    planned = {Path(f).parent.relative_to("results/mt/train").parts[:3] for f in outputs if "/train/" in f
               and f.endswith("metrics.json")}
    assert planned == {("viewer_valence", "full_multitask", "colour+motion")}, planned
