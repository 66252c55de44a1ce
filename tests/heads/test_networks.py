"""The full head's networks against the papers: structure, parameter counts, YouTube-8M's
MoeModel re-implemented in NumPy on copied weights, every loss against NumPy, output ranges,
per-task defaults and ``evoke train describe``."""

import json

import numpy as np
import pytest
import torch

from evoke.config import ConfigError, load_schema, validate_config
from evoke.heads.full import FullConfig, FullConfigError, build_head, compute_loss, link, pairwise_loss, \
    task_defaults
from evoke.heads.models import ContextGating, FullHead, MoeModel, count_parameters, pad_repeat_first

# EEV's features: Inception-v3 pool3 (image), VGGish (audio), FaceNet (face, two faces x 512)
EEV_DIMS = {"inception_v3": 2048, "vggish": 128, "facenet": 1024}


def gru_params(d: int, h: int, layers: int) -> int:
    """PyTorch's GRU: per layer W_ih (3h x d), W_hh (3h x h), b_ih and b_hh (3h each)."""
    total = 0
    for _ in range(layers):
        total += 3 * h * d + 3 * h * h + 6 * h
        d = h
    return total


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def np_moe_model(x, gate_w, expert_w, expert_b, vocab_size, num_mixtures):
    """YouTube-8M video_level_models.MoeModel.create_model, line by line in NumPy
    (slim.fully_connected(x, n) is x @ W + b; the gates have biases_initializer=None)."""
    gate_activations = x @ gate_w
    expert_activations = x @ expert_w + expert_b
    gating_distribution = softmax(gate_activations.reshape(-1, num_mixtures + 1))
    expert_distribution = sigmoid(expert_activations.reshape(-1, num_mixtures))
    final_probabilities_by_class_and_batch = (gating_distribution[:, :num_mixtures] * expert_distribution).sum(1)
    return final_probabilities_by_class_and_batch.reshape(-1, vocab_size)


def np_context_gating(x, w, gamma, beta, mean, var, eps):
    """Miech et al.'s context_gating with add_batch_norm (inference: the moving statistics)."""
    gates = x @ w
    gates = (gates - mean) / np.sqrt(var + eps) * gamma + beta
    return x * sigmoid(gates)


def _np(t):
    return t.detach().double().numpy()


def _randomise_bn(module, rng):
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            n = m.num_features
            m.running_mean.copy_(torch.as_tensor(rng.normal(0, 0.5, n)))
            m.running_var.copy_(torch.as_tensor(rng.uniform(0.5, 2.0, n)))
            m.weight.data.copy_(torch.as_tensor(rng.uniform(0.5, 1.5, n)))
            m.bias.data.copy_(torch.as_tensor(rng.normal(0, 0.3, n)))


# ------------------------------------------------------------------ structure


def test_eev_network_has_the_papers_sizes_and_parameter_count():
    cfg = FullConfig.for_task("eev", {})
    model = build_head(EEV_DIMS, 15, 1, cfg)
    # EEV: image 512, audio 128, face 256, fused 896
    assert model.init_args["gru_hidden"] == {"facenet": 256, "inception_v3": 512, "vggish": 128}
    assert model.fusion_dim == 896
    for name, gru in model.grus.items():
        assert gru.gru.num_layers == 1 and gru.drop.p == pytest.approx(0.3)
        assert count_parameters(gru) == gru_params(EEV_DIMS[name], model.init_args["gru_hidden"][name], 1)
    E, K, D = cfg.n_experts, 15, 896
    branch = model.branches[0]
    assert branch.moe.gates.bias is None  # YouTube-8M: gates without bias
    assert branch.moe.gates.weight.shape == (K * (E + 1), D)  # one dummy expert per class
    assert count_parameters(branch.moe) == D * K * (E + 1) + D * K * E + K * E
    # context gating with batch norm: W (no bias: batch norm shifts) + gamma, beta
    assert model.input_gate.fc.bias is None and model.input_gate.bn is not None
    assert count_parameters(model.input_gate) == D * D + 2 * D
    assert count_parameters(branch.gate) == K * K + 2 * K  # on the 15 class outputs
    expected = (sum(gru_params(EEV_DIMS[n], h, 1) for n, h in model.init_args["gru_hidden"].items())
                + D * D + 2 * D + D * K * (E + 1) + D * K * E + K * E + K * K + 2 * K)
    assert count_parameters(model) == expected
    assert model.output_kind == "probability"


def test_danmaku_network_stacks_two_gru_layers_and_eight_experts():
    cfg = FullConfig.for_task("danmaku_ldl", {})
    assert (cfg.gru_layers, cfg.n_experts, cfg.dropout, cfg.train.batch_size, cfg.train.lr, cfg.loss) == \
        (2, 8, 0.3, 16, 5e-4, "kl_clamp_softmax")
    model = build_head({"efficientnet": 1280, "vggish": 128}, 6, 1, cfg)
    gru = model.grus["efficientnet"]
    assert gru.gru.num_layers == 2 and gru.gru.dropout == pytest.approx(0.3)  # between the layers
    assert gru.drop.p == pytest.approx(0.3)  # and after the last
    assert count_parameters(gru) == gru_params(1280, 512, 2)
    assert model.branches[0].moe.gates.weight.shape == (6 * 9, 640)


def test_former_head_is_an_option():
    cfg = FullConfig.from_dict({"moe": "hidden_layer", "gating_batch_norm": False, "gru_hidden": 128,
                                "n_experts": 4, "moe_dim": 256})
    model = build_head({"colour": 10, "motion": 3}, 27, 1, cfg)
    b = model.branches[0]
    assert model.input_gate.bn is None and model.input_gate.fc.bias is not None
    assert b.moe.gate.bias is not None and b.moe.experts.weight.shape == (4 * 256, 256)
    assert b.gate.fc.weight.shape == (256, 256) and b.out.weight.shape == (27, 256)
    assert model.output_kind == "score"


# ------------------------------------------------------------------ against NumPy


def test_moe_matches_numpy_moe_model_on_copied_weights():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    moe = MoeModel(40, 7, 3).double()
    x = rng.normal(0, 2, (11, 40))
    got = _np(moe(torch.as_tensor(x)))
    want = np_moe_model(x, _np(moe.gates.weight).T, _np(moe.experts.weight).T, _np(moe.experts.bias), 7, 3)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_context_gating_with_batch_norm_matches_numpy():
    rng = np.random.default_rng(1)
    cg = ContextGating(12).double()
    _randomise_bn(cg, rng)
    x = rng.normal(0, 1, (9, 12))
    cg.eval()
    want = np_context_gating(x, _np(cg.fc.weight).T, _np(cg.bn.weight), _np(cg.bn.bias), _np(cg.bn.running_mean),
                             _np(cg.bn.running_var), cg.bn.eps)
    np.testing.assert_allclose(_np(cg(torch.as_tensor(x))), want, rtol=1e-10)
    cg.train()  # training: the batch's own mean and (biased) variance
    g = x @ _np(cg.fc.weight).T
    want = np_context_gating(x, _np(cg.fc.weight).T, _np(cg.bn.weight), _np(cg.bn.bias), g.mean(0), g.var(0),
                             cg.bn.eps)
    np.testing.assert_allclose(_np(cg(torch.as_tensor(x))), want, rtol=1e-8)


def test_whole_head_after_the_grus_matches_numpy():
    """GRU states from torch; concatenation, gating, MoeModel and class gating in NumPy."""
    rng = np.random.default_rng(2)
    torch.manual_seed(2)
    model = build_head({"vggish": 6, "fer": 5}, 4, 1, FullConfig.from_dict({"gru_hidden": 8, "n_experts": 3}))
    model = model.double()
    _randomise_bn(model, rng)
    model.eval()
    x = {"vggish": torch.as_tensor(rng.normal(size=(5, 10, 6))), "fer": torch.as_tensor(rng.normal(size=(5, 10, 5)))}
    got = _np(model(x))
    states = np.concatenate([_np(model.grus[m](x[m])) for m in model.modalities], axis=1)  # stats: identity
    g, b = model.input_gate, model.branches[0]
    h = np_context_gating(states, _np(g.fc.weight).T, _np(g.bn.weight), _np(g.bn.bias), _np(g.bn.running_mean),
                          _np(g.bn.running_var), g.bn.eps)
    p = np_moe_model(h, _np(b.moe.gates.weight).T, _np(b.moe.experts.weight).T, _np(b.moe.experts.bias), 4, 3)
    want = np_context_gating(p, _np(b.gate.fc.weight).T, _np(b.gate.bn.weight), _np(b.gate.bn.bias),
                             _np(b.gate.bn.running_mean), _np(b.gate.bn.running_var), b.gate.bn.eps)
    np.testing.assert_allclose(got, want, rtol=1e-9)


def _targets(rng, n=6, k=5):
    y = rng.dirichlet(np.ones(k), n)
    y[0, :2] = [0.0, 0.0]  # zeros in a distribution: 0 ln 0 = 0
    return y / y.sum(1, keepdims=True)


def test_losses_match_numpy():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.02, 0.98, (6, 5))
    z = rng.normal(0, 2, (6, 5))
    yb = (rng.random((6, 5)) < 0.4).astype(float)
    m = (rng.random((6, 5)) < 0.7).astype(float)
    yd = _targets(rng)
    T = torch.as_tensor

    def bce(q, y):
        return -(y * np.log(q) + (1 - y) * np.log(1 - q))

    # EEV: the sum of the per-class cross-entropies (labelled entries), mean over the batch
    assert float(compute_loss("bce_sum", T(p), T(yb), None, "probability")) == pytest.approx(bce(p, yb).sum(1).mean())
    assert float(compute_loss("bce_sum", T(p), T(yb), T(m), "probability")) == pytest.approx((bce(p, yb) * m).sum() / 6)
    assert float(compute_loss("bce_sum", T(z), T(yb), None, "score")) == pytest.approx(bce(sigmoid(z), yb).sum(1).mean())
    # log-loss averaged over the labelled entries
    assert float(compute_loss("bce_mean", T(p), T(yb), T(m), "probability")) == \
        pytest.approx((bce(p, yb) * m).sum() / m.sum())
    assert float(compute_loss("bce_mean", T(z), T(yb), None, "score")) == pytest.approx(bce(sigmoid(z), yb).mean())
    # VCE: L1 to the distribution
    q = (p + 1e-8) / (p + 1e-8).sum(1, keepdims=True)
    assert float(compute_loss("l1_normalise", T(p), T(yd), None, "probability")) == \
        pytest.approx(np.abs(q - yd).sum(1).mean())
    assert float(compute_loss("l1_softmax", T(z), T(yd), None)) == pytest.approx(np.abs(softmax(z) - yd).sum(1).mean())
    # danmaku LDL: clamp to [0, 1], softmax, KL(y || q)
    q = softmax(np.clip(z, 0, 1))
    kl = np.where(yd > 0, yd * (np.log(np.where(yd > 0, yd, 1)) - np.log(q)), 0).sum(1).mean()
    assert float(compute_loss("kl_clamp_softmax", T(z), T(yd), None)) == pytest.approx(kl)
    # V2V: BCE on sigmoid(f(more) - f(less)) with target 1
    s_less, s_more = rng.normal(size=8), rng.normal(size=8)
    assert float(pairwise_loss(T(s_less), T(s_more))) == pytest.approx(-np.log(sigmoid(s_more - s_less)).mean())


def test_multitask_bce_reads_one_column_per_branch():
    rng = np.random.default_rng(4)
    p = rng.uniform(0.05, 0.95, (5, 3, 1))
    y = (rng.random((5, 3)) < 0.5).astype(float)
    m = np.array([[1, 1, 0], [1, 0, 1], [1, 1, 1], [0, 1, 1], [1, 0, 0]], float)
    per = -(y * np.log(p[..., 0]) + (1 - y) * np.log(1 - p[..., 0]))
    got = compute_loss("bce_mean", torch.as_tensor(p), torch.as_tensor(y), torch.as_tensor(m), "probability")
    assert float(got) == pytest.approx((per * m).sum() / m.sum())


# ------------------------------------------------------------------ output ranges


@pytest.mark.parametrize("task,k", [("eev", 15), ("danmaku_ldl", 6), ("vce", 27)])
def test_outputs_are_probabilities_and_distributions_on_the_simplex(task, k):
    torch.manual_seed(5)
    cfg = FullConfig.for_task(task, {"gru_hidden": 8})
    model = build_head({"colour": 10, "motion": 3}, k, 1, cfg)
    x = {"colour": torch.randn(32, 12, 10) * 50, "motion": torch.randn(32, 12, 3) * 50}
    for train in (True, False):
        model.train(train)
        z = model(x).detach()
        assert ((z > 0) & (z < 1)).all()  # sigmoid experts, softmax gates, a sigmoid gate
    pred = link(cfg.loss, z.numpy(), model.output_kind)
    if task == "eev":
        assert ((pred > 0) & (pred < 1)).all()
    else:
        assert (pred >= 0).all() and np.allclose(pred.sum(1), 1.0, atol=1e-6)


def test_a_training_batch_of_one_passes_batch_norm():
    model = build_head({"colour": 10}, 3, 1, FullConfig.from_dict({"gru_hidden": 4}))
    model.train()
    out = model({"colour": torch.randn(1, 5, 10)})
    assert out.shape == (1, 3) and torch.isfinite(out).all()


def test_init_args_rebuild_a_saved_state_dict():
    torch.manual_seed(6)
    model = build_head({"colour": 10, "vggish": 128}, 6, 3, FullConfig.for_task("danmaku_ldl", {"gru_hidden": 8}))
    model.eval()
    again = FullHead.from_init_args(json.loads(json.dumps(model.init_args)))
    again.load_state_dict(model.state_dict())
    again.eval()
    x = {"colour": torch.randn(4, 6, 10), "vggish": torch.randn(4, 6, 128)}
    assert torch.equal(model(x), again(x))
    assert model(x).shape == (4, 3, 6)


def test_windows_are_padded_by_repeating_the_first_step():
    seq = np.arange(12, dtype=np.float32).reshape(4, 3)
    out = pad_repeat_first(seq, 60)
    assert out.shape == (60, 3) and (out[:57] == seq[0]).all() and (out[56:] == seq).all()


# ------------------------------------------------------------------ settings


def test_per_task_defaults_come_from_the_schema_and_yield_to_settings():
    schema_full = load_schema()["properties"]["train"]["properties"]["full"]
    assert task_defaults() == schema_full["x-task-defaults"]
    eev = FullConfig.for_task("eev", {})
    assert (eev.train.batch_size, eev.train.lr, eev.loss, eev.train.clip_norm) == (128, 5e-4, "bce_sum", 1.0)
    assert FullConfig.for_task("vce", {}).train.batch_size == 32  # base default
    cfg = FullConfig.for_task("eev", {"batch_size": 64, "lr": 0.01, "tasks": {"eev": {"lr": 0.002},
                                                                             "vce": {"lr": 0.5}}})
    assert (cfg.train.batch_size, cfg.train.lr) == (64, 0.002)  # settings < tasks.eev
    assert FullConfig.for_task("vce", {"tasks": {"vce": {"lr": 0.5}}}).train.lr == 0.5
    # the validator fills no default into train.full (it would hide the task's)
    filled = validate_config({"manifest": "m.csv", "train": {"full": {"tasks": {"eev": {"gru_layers": 2}}}}})
    assert filled["train"]["full"] == {"tasks": {"eev": {"gru_layers": 2}}}


def test_bad_settings_are_refused_by_name():
    with pytest.raises(FullConfigError, match="unknown full-head setting.*hidden"):
        FullConfig.for_task("eev", {"hidden": 16})
    with pytest.raises(FullConfigError, match="loss l1_softmax does not fit its binary"):
        FullConfig.for_task("eev", {"loss": "l1_softmax"})
    with pytest.raises(FullConfigError, match="no full head for task.*v2v_from_emotions"):
        FullConfig.for_task("eev", {"tasks": {"v2v_from_emotions": {}}})
    with pytest.raises(FullConfigError, match="no GRU width for extractor 'mystery'"):
        build_head({"mystery": 4}, 2, 1, FullConfig())
    with pytest.raises(ConfigError, match="train.full.tasks.eev"):
        validate_config({"manifest": "m.csv", "train": {"full": {"tasks": {"eev": {"hiddn": 3}}}}})


# ------------------------------------------------------------------ describe


def test_describe_prints_the_papers_network_with_registry_dims(capsys, tmp_path):
    from evoke.cli import main

    cfg = tmp_path / "config.yaml"
    cfg.write_text("manifest: m.csv\nfeatures:\n  settings:\n    efficientnet: {variant: lite0}\n")
    assert main(["train", "describe", "--task", "danmaku_ldl", "--head", "full", "--features",
                 "efficientnet,vggish,facenet", "--json", "--config", str(cfg)]) == 0
    d = json.loads(capsys.readouterr().out)
    dims = {m["extractor"]: m["input_dim"] for m in d["modalities"]}
    assert dims == {"efficientnet": 1280, "vggish": 128, "facenet": 256}  # facenet: 2 faces x dlib 128
    assert [m["gru_hidden"] for m in d["modalities"]] == [512, 256, 128]
    assert {m["gru_layers"] for m in d["modalities"]} == {2}
    assert d["fusion_dim"] == 896 and d["input_gating"] == {"batch_norm": True, "dim": 896,
                                                           "n_parameters": 896 * 896 + 2 * 896}
    assert d["moe"]["experts"] == 8 and d["moe"]["dummy_expert"] and d["moe"]["outputs"] == 6
    assert d["moe"]["n_parameters"] == 896 * 6 * 9 + 896 * 6 * 8 + 6 * 8
    assert d["output_gating"]["dim"] == 6 and d["output_link"] == ["clamp", "softmax"]
    assert d["loss"] == "kl_clamp_softmax" and d["padding"] == "repeat_first" and d["sequence_length"] == 60
    assert d["optimizer"] == {"name": "adam", "lr": 5e-4, "batch_size": 16, "grad_clip": 1.0, "weight_decay": 0.0}
    model = FullHead.from_init_args(d["init_args"])
    assert d["n_parameters"] == count_parameters(model)
    assert main(["train", "describe", "--task", "eev", "--head", "full", "--features", "inception_v3,vggish",
                 "--config", str(cfg)]) == 0
    text = capsys.readouterr().out
    assert "GRU inception_v3 (image): 2048 -> 512" in text and "loss: bce_sum" in text


def test_train_still_needs_dataset_and_out(capsys):
    from evoke.cli import main

    assert main(["train", "--task", "vce", "--head", "full", "--features", "colour"]) == 2
    assert "--dataset and --out required" in capsys.readouterr().err
