"""The COGNIMUSE networks: Hayat, Ventura and Lapedriza (2021), "Recognizing Emotions evoked by
Movies using Multitask Learning" (ACII), for the ``viewer_valence`` task's full heads.

The paper (its abstract): "instead of modeling the aggregated value we jointly model the
emotions experienced by each viewer and the aggregated value using a multi-task learning
approach. Concretely, we propose two deep learning architectures: a Single-Task (ST)
architecture and a Multi-Task (MT) architecture." The layer sizes and training set-up below
are as issue 15 summarises the paper (its full text was not at hand here; the same holds
for the EEV figures in :mod:`evoke.heads.models`):

* the unit is a subtitle segment, its valence averaged and binarised at 0
  (:mod:`evoke.tasks.viewer_valence`, ``units: segment``);
* visual branch: "I3D Mixed-5c, max-pooled over the segment's clips": each
  extractor's steps inside the segment, max-pooled (:func:`segment_max`; the
  ``i3d`` extractor already takes the max over the clips of each second, so the
  max over the segment's seconds is the max over its clips). No learned layer;
* text branch: "the segment's subtitle words (at most 18, padded), a learned word
  embedding and two convolution + max-pooling pairs, trained with the head from
  random initialisation" (:class:`TextBranch`);
* ST: "fused features, three fully connected layers (1024, 512, 256), sigmoid,
  class-weighted log-loss, Adam lr 1e-3, L1 (Lasso) penalty" (one network per
  target: the average viewer and each viewer);
* MT: "shared layers (2048, 1024), then one branch of three layers (512, 256,
  128) per viewer plus the average viewer, sigmoid and log-loss with the Lasso
  penalty, each branch updated only on the samples its viewer annotated";
* "Text-only, visual-only and both, as in the paper's ablation": ``modalities``.

Our own choices (options, ``train.full`` keys; the paper's values were not at hand):
the tokeniser (lower-cased runs of letters and digits, apostrophes inside a word
kept), the vocabulary (the ``max_vocab`` most frequent words of the *training*
split; index 0 pads, 1 stands for every other word), the first ``max_words``
words kept and padding at the end, ``embed_dim`` 128, ``text_filters`` 128 of
width ``kernel_size`` 3 without padding and max-pooling by 2, ReLU after every
convolution and hidden layer, no dropout, the L1 strength ``l1`` (1e-5, on the
weights of the fully connected layers, biases, convolutions and embedding left
out), the class weights ``n / (2 n_c)`` of each target's labelled training units
(scikit-learn's "balanced"), and ``standardise`` (the visual features scaled by
the training steps' mean and std before pooling).

Loss (:func:`weighted_log_loss`), for outputs ``p`` (B, K) in (0, 1), targets
``y`` and labelled entries ``m``, class weights ``w[k, c]``::

    sum_k  sum_i m_ik w[k, y_ik] BCE(p_ik, y_ik) / max(1, sum_i m_ik)  +  l1 * sum |W|

(BCE's logarithms clamped at -100 as :func:`torch.nn.functional.binary_cross_entropy`
does): each branch's weighted log-loss over the units its viewer annotated, summed
over the branches, so an unannotated unit sends no gradient into its branch.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evoke.heads.models import count_parameters

log = logging.getLogger(__name__)

MODALITIES = ("both", "visual", "text")
PAD, UNK = 0, 1
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


# ------------------------------------------------------------------ text


def tokenize(text: str | None) -> list[str]:
    """Lower-cased words (runs of letters/digits, inner apostrophes kept): ``"Don't GO!"`` ->
    ``["don't", "go"]``; None or empty -> ``[]``."""
    return _WORD.findall(text.lower()) if text else []


@dataclass
class Vocabulary:
    """Words -> indices; ``words[0]`` is the padding, ``words[1]`` the unknown word."""

    words: list[str]

    @classmethod
    def build(cls, texts, max_size: int) -> "Vocabulary":
        """The ``max_size`` most frequent words of ``texts`` (ties in alphabetical order)."""
        counts = Counter(w for t in texts for w in tokenize(t))
        kept = sorted(counts, key=lambda w: (-counts[w], w))[:max_size]
        return cls(["<pad>", "<unk>", *kept])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, texts, max_words: int) -> np.ndarray:
        """(N, max_words) int64: each text's first ``max_words`` words, unknown ones UNK, padded
        with PAD at the end."""
        index = {w: i for i, w in enumerate(self.words)}
        out = np.full((len(texts), max_words), PAD, np.int64)
        for n, t in enumerate(texts):
            ids = [index.get(w, UNK) for w in tokenize(t)[:max_words]]
            out[n, :len(ids)] = ids
        return out


def text_length_after(max_words: int, kernel_size: int) -> int:
    """Steps left after the two (convolution without padding, max-pool by 2) pairs."""
    n = max_words
    for _ in range(2):
        n = (n - kernel_size + 1) // 2
    return n


class TextBranch(nn.Module):
    """(B, max_words) word indices -> (B, filters * steps): embedding (PAD -> a zero vector, not
    trained), then twice convolution (``kernel_size``, no padding), ReLU, max-pool by 2; flattened."""

    def __init__(self, vocab_size: int, max_words: int = 18, embed_dim: int = 128, filters: int = 128,
                 kernel_size: int = 3):
        super().__init__()
        steps = text_length_after(max_words, kernel_size)
        if steps < 1:
            raise ValueError(f"max_words {max_words} is too short for two convolutions of width {kernel_size} "
                             "with max-pooling by 2")
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.conv1 = nn.Conv1d(embed_dim, filters, kernel_size)
        self.conv2 = nn.Conv1d(filters, filters, kernel_size)
        self.out_dim = filters * steps

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        x = self.embedding(words).transpose(1, 2)  # (B, E, L)
        x = F.max_pool1d(torch.relu(self.conv1(x)), 2)
        x = F.max_pool1d(torch.relu(self.conv2(x)), 2)
        return x.flatten(1)


def _mlp(dim_in: int, widths) -> tuple[nn.Sequential, int]:
    layers = []
    for w in widths:
        layers += [nn.Linear(dim_in, int(w)), nn.ReLU()]
        dim_in = int(w)
    return nn.Sequential(*layers), dim_in


class CognimuseNet(nn.Module):
    """The ST (``multitask=False``: ``layers`` then one sigmoid output) or MT network
    (``shared_layers``, then ``n_branches`` branches of ``branch_layers`` and a sigmoid output each)
    on the concatenation of the max-pooled visual features (``visual_dim``, 0: none) and the text
    branch (``vocab_size``, 0: none).

    Input: ``{"visual": (B, visual_dim) float, "words": (B, max_words) int64}`` (only what the
    modalities use). Output: probabilities (B, n_branches). :attr:`init_args` rebuilds it."""

    output_kind = "probability"

    def __init__(self, visual_dim: int, vocab_size: int, multitask: bool = False, n_branches: int = 1,
                 max_words: int = 18, embed_dim: int = 128, text_filters: int = 128, kernel_size: int = 3,
                 layers=(1024, 512, 256), shared_layers=(2048, 1024), branch_layers=(512, 256, 128)):
        super().__init__()
        if not visual_dim and not vocab_size:
            raise ValueError("the network needs the visual features, the text or both")
        if not multitask and n_branches != 1:
            raise ValueError("the single-task network has one output")
        self.init_args = {"visual_dim": int(visual_dim), "vocab_size": int(vocab_size),
                          "multitask": bool(multitask), "n_branches": int(n_branches), "max_words": int(max_words),
                          "embed_dim": int(embed_dim), "text_filters": int(text_filters),
                          "kernel_size": int(kernel_size), "layers": [int(x) for x in layers],
                          "shared_layers": [int(x) for x in shared_layers],
                          "branch_layers": [int(x) for x in branch_layers]}
        self.register_buffer("visual_mean", torch.zeros(visual_dim))
        self.register_buffer("visual_std", torch.ones(visual_dim))
        self.text = TextBranch(vocab_size, max_words, embed_dim, text_filters, kernel_size) if vocab_size else None
        self.fusion_dim = int(visual_dim) + (self.text.out_dim if self.text is not None else 0)
        if multitask:
            self.trunk, width = _mlp(self.fusion_dim, shared_layers)
            stacks = [_mlp(width, branch_layers) for _ in range(n_branches)]
        else:
            self.trunk, width = nn.Sequential(), self.fusion_dim
            stacks = [_mlp(width, layers)]
        self.branches = nn.ModuleList([nn.Sequential(s, nn.Linear(w, 1)) for s, w in stacks])

    def set_input_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        std = np.where(np.asarray(std) > 1e-8, std, 1.0)
        self.visual_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.visual_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def fused(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        if self.init_args["visual_dim"]:
            parts.append((inputs["visual"] - self.visual_mean) / self.visual_std)
        if self.text is not None:
            parts.append(self.text(inputs["words"]))
        return torch.cat(parts, dim=-1)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.trunk(self.fused(inputs))
        return torch.sigmoid(torch.cat([b(x) for b in self.branches], dim=-1))

    def dense_weights(self) -> list[torch.Tensor]:
        """The weights the Lasso penalty reads: every fully connected layer's (not the biases)."""
        return [m.weight for m in self.modules() if isinstance(m, nn.Linear)]


# ------------------------------------------------------------------ loss


def class_weights(y: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(K, 2): ``n_k / (2 n_kc)`` over each column's labelled units (1 for a class it lacks)."""
    y, m = np.asarray(y) >= 0.5, np.asarray(m, bool)
    out = np.ones((y.shape[1], 2))
    for k in range(y.shape[1]):
        n = m[:, k].sum()
        for c in (0, 1):
            nc = (m[:, k] & (y[:, k] == c)).sum()
            if nc:
                out[k, c] = n / (2 * nc)
    return out


def weighted_log_loss(p: torch.Tensor, y: torch.Tensor, m: torch.Tensor | None, weights: torch.Tensor | None,
                      net: CognimuseNet | None = None, l1: float = 0.0) -> torch.Tensor:
    """The loss of the module docstring; ``weights`` (K, 2) or None (unweighted), ``m`` None:
    everything labelled; ``l1`` times the absolute sum of ``net``'s dense weights."""
    per = F.binary_cross_entropy(p, y, reduction="none")
    if weights is not None:
        per = per * torch.where(y >= 0.5, weights[:, 1], weights[:, 0])
    m = torch.ones_like(y) if m is None else m
    loss = ((per * m).sum(0) / m.sum(0).clamp_min(1.0)).sum()
    if l1 and net is not None:
        loss = loss + l1 * sum(w.abs().sum() for w in net.dense_weights())
    return loss


# ------------------------------------------------------------------ units


def segment_steps(ts: np.ndarray, start: float, end: float) -> np.ndarray:
    """Boolean (T,): the steps with ``start <= t < end``; a segment shorter than a step: the
    step at its start."""
    sel = (ts >= start - 1e-6) & (ts < end - 1e-6)
    if not sel.any():
        sel = np.zeros(ts.shape, bool)
        sel[int(np.clip(np.searchsorted(ts, start + 1e-6, side="right") - 1, 0, len(ts) - 1))] = True
    return sel


def segment_max(feats, video_id: str, start: float, end: float) -> np.ndarray:
    """Per extractor (name order) the max over the valid steps in [start, end) (all steps when
    none is valid), concatenated: (sum D,)."""
    parts = []
    for e in feats.extractors:
        f = feats.data[video_id][e]
        sel = segment_steps(f.timestamps_s, start, end)
        win, valid = f.values[sel], f.mask[sel]
        parts.append((win[valid] if valid.any() else win).max(0))
    return np.concatenate(parts).astype(np.float32)


def cue_text(cues, start: float, end: float) -> str:
    """The texts of the cues ``[(start_s, end_s, text), ...]`` that overlap [start, end), joined."""
    return " ".join(t for a, b, t in cues or () if t and a < end and b > start)


class SegmentUnits:
    """Samples for :func:`~evoke.heads.train.train_model`: units ``[start, end)`` of videos, their
    word indices (N, max_words) (or None), targets and mask."""

    def __init__(self, feats, vids, starts, ends, words, y, m, visual: bool):
        self.feats, self.vids, self.starts, self.ends = feats, list(vids), list(starts), list(ends)
        self.words, self.y, self.m, self.visual = words, y, m, visual

    def __len__(self):
        return len(self.vids)

    def __getitem__(self, i):
        return self, i

    def inputs(self, idx) -> dict[str, torch.Tensor]:
        out = {}
        if self.visual:
            out["visual"] = torch.from_numpy(np.stack([segment_max(self.feats, self.vids[i], self.starts[i],
                                                                   self.ends[i]) for i in idx]))
        if self.words is not None:
            out["words"] = torch.from_numpy(self.words[idx])
        return out

    def collate(self, idx):
        y = torch.as_tensor(self.y[idx], dtype=torch.float32)
        m = None if self.m is None else torch.as_tensor(self.m[idx], dtype=torch.float32)
        return self.inputs(idx), y, m


def _collate(samples):
    return samples[0][0].collate([i for _, i in samples])


def predict_probabilities(net: CognimuseNet, units: SegmentUnits, batch_size: int = 256) -> np.ndarray:
    net.eval()
    outs = []
    with torch.no_grad():
        for s in range(0, len(units), batch_size):
            outs.append(net(units.inputs(list(range(s, min(s + batch_size, len(units)))))))
    return torch.cat(outs).double().numpy() if outs else np.zeros((0, net.init_args["n_branches"]))


# ------------------------------------------------------------------ fitting


def network_loss(cfg) -> str:
    """``bce_class_weighted`` (the paper's, when ``loss`` is unset) or ``bce_mean`` (unweighted)."""
    from evoke.heads.full import LOSS_ALIASES

    return LOSS_ALIASES.get(cfg.loss, cfg.loss) or "bce_class_weighted"


def build_net(cfg, visual_dim: int, vocab_size: int, multitask: bool, n_branches: int) -> CognimuseNet:
    """The network ``cfg`` (:class:`~evoke.heads.full.FullConfig`) describes."""
    return CognimuseNet(visual_dim if cfg.modalities != "text" else 0,
                        vocab_size if cfg.modalities != "visual" else 0, multitask, n_branches, cfg.max_words,
                        cfg.embed_dim, cfg.text_filters, cfg.kernel_size, cfg.layers, cfg.shared_layers,
                        cfg.branch_layers)


def visual_stats(feats, video_ids) -> tuple[np.ndarray, np.ndarray]:
    from evoke.heads.full import input_stats

    stats = input_stats(feats, video_ids)
    return (np.concatenate([stats[e][0] for e in feats.extractors]),
            np.concatenate([stats[e][1] for e in feats.extractors]))


def fit_cognimuse(feats, train: dict, val: dict, predict: list[dict], cfg, ckpt_dir: Path, multitask: bool,
                  stop_after_epoch: int | None = None):
    """Train on ``train`` (dict of ``video_id``, ``start_s``, ``end_s``, ``text``, ``y`` (N, K),
    ``mask``), early-stop on ``val``; return the probabilities (N, K) for each dict of
    ``predict``, the history, the network and its vocabulary (None without text).

    ``multitask``: one MT network with K branches; else K must be 1 (an ST network)."""
    from evoke.config import fingerprint
    from evoke.heads.train import train_model

    k = np.asarray(train["y"]).reshape(len(train["video_id"]), -1).shape[1]
    vocab = None
    if cfg.modalities != "visual":
        vocab = Vocabulary.build(train["text"], cfg.max_vocab)
        if len(vocab) == 2:
            log.warning("viewer_valence: the training units have no subtitle words; the text branch "
                        "(modalities %s) sees padding only", cfg.modalities)
    torch.manual_seed(cfg.train.seed)
    net = build_net(cfg, sum(feats.dims.values()), len(vocab) if vocab else 0, multitask, k)
    if cfg.standardise and net.init_args["visual_dim"]:
        net.set_input_stats(*visual_stats(feats, train["video_id"]))
    mk = lambda d: SegmentUnits(feats, d["video_id"], d["start_s"], d["end_s"],  # noqa: E731
                                vocab.encode(d["text"], cfg.max_words) if vocab else None,
                                d.get("y"), d.get("mask"), bool(net.init_args["visual_dim"]))
    tr, va = mk(train), mk(val)
    m_tr = np.ones(np.shape(train["y"]), bool) if train.get("mask") is None else np.asarray(train["mask"], bool)
    weights = torch.as_tensor(class_weights(train["y"], m_tr), dtype=torch.float32) \
        if network_loss(cfg) == "bce_class_weighted" else None

    def loss_fn(model, batch):
        x, y, m = batch
        return weighted_log_loss(model(x), y, m, weights, model, cfg.l1)

    key = fingerprint("cognimuse", repr(cfg), sorted(net.state_dict()), list(train["video_id"]),
                      list(train["start_s"]), float(np.sum(train["y"])), list(val["video_id"]),
                      vocab.words if vocab else None)
    history = train_model(net, loss_fn, tr, va, _collate, cfg.train, ckpt_dir, stop_after_epoch=stop_after_epoch,
                          run_key=key)
    preds = [predict_probabilities(net, mk({**d, "y": None, "mask": None})) for d in predict]
    return preds, history, net, vocab


# ------------------------------------------------------------------ saved models


class CognimusePart:
    """A trained :class:`CognimuseNet` as a saved-model part (:mod:`evoke.predict.model`).

    A model trained on segments scores segments (:meth:`predict_windows` on the windows of
    :meth:`~evoke.tasks.viewer_valence.ViewerUnits.windows`, as training did); one trained on
    seconds scores seconds (:meth:`predict`): the unit of second t is [t, t + 1), its words
    those of the subtitle cues overlapping it (``feats.subtitles``: ``{video_id: [(start_s,
    end_s, text)]}``, set by :mod:`evoke.predict.run` from the dataset's segments table or an
    ``.srt`` beside the video; none: padding only)."""

    kind = "cognimuse"

    def __init__(self, net: CognimuseNet, vocab: Vocabulary | None):
        self.net, self.vocab = net, vocab

    def unit_inputs(self, feats, video_ids, starts, ends, texts) -> SegmentUnits:
        words = self.vocab.encode(texts, self.net.init_args["max_words"]) if self.vocab else None
        return SegmentUnits(feats, video_ids, starts, ends, words, None, None, bool(self.net.init_args["visual_dim"]))

    def predict(self, feats, video_ids, times, seq_len: int) -> np.ndarray:
        subs = getattr(feats, "subtitles", None) or {}
        starts = [float(t) for t in times]
        ends = [t + 1.0 for t in starts]
        texts = [cue_text(subs.get(v), a, b) for v, a, b in zip(video_ids, starts, ends)]
        return self.predict_windows(feats, {"video_id": list(video_ids), "start_s": starts, "end_s": ends,
                                            "text": texts})

    def predict_windows(self, feats, windows: dict) -> np.ndarray:
        """(N, K) for units ``windows`` (``video_id, start_s, end_s, text``: what
        :func:`fit_cognimuse` reads)."""
        w = windows
        p = predict_probabilities(self.net, self.unit_inputs(feats, list(w["video_id"]), w["start_s"], w["end_s"],
                                                             w["text"]))
        return p.reshape(len(w["video_id"]), -1)

    def save(self, folder: Path, prefix: str) -> dict:
        from evoke.store import atomic_path

        with atomic_path(folder / f"{prefix}.pt") as tmp:
            torch.save(self.net.state_dict(), tmp)
        spec = {"kind": self.kind, "class": "CognimuseNet", "kwargs": self.net.init_args,
                "state_dict": f"{prefix}.pt", "vocabulary": None}
        if self.vocab is not None:
            with atomic_path(folder / f"{prefix}.vocabulary.json") as tmp:
                tmp.write_text(json.dumps(self.vocab.words, ensure_ascii=False), encoding="utf-8")
            spec["vocabulary"] = f"{prefix}.vocabulary.json"
        self.load(folder, spec)  # the recorded arguments rebuild this network, or training stops here
        return spec

    @classmethod
    def load(cls, folder: Path, spec: dict) -> "CognimusePart":
        from evoke.predict.model import PredictError

        try:
            net = CognimuseNet(**spec["kwargs"])
            net.load_state_dict(torch.load(folder / spec["state_dict"], map_location="cpu", weights_only=True))
            vocab = None
            if spec.get("vocabulary"):
                vocab = Vocabulary(json.loads((folder / spec["vocabulary"]).read_text(encoding="utf-8")))
        except FileNotFoundError as exc:
            raise PredictError(f"{folder}: {Path(exc.filename).name} missing from the model folder") from None
        except (TypeError, RuntimeError, ValueError) as exc:
            raise PredictError(f"{folder}: the saved COGNIMUSE head does not fit this evoke's CognimuseNet "
                               f"({str(exc).splitlines()[0]})") from exc
        if vocab is not None and len(vocab) != net.init_args["vocab_size"]:
            raise PredictError(f"{folder / spec['vocabulary']}: {len(vocab)} words, the network's embedding has "
                               f"{net.init_args['vocab_size']}")
        net.eval()
        return cls(net, vocab)


# ------------------------------------------------------------------ describe


def describe_cognimuse(task: str, head: str, dims: dict[str, int], cfg, n_branches: int | None,
                       from_defaults: list[str], from_config: list[str], branches_from: str | None = None) -> dict:
    """:func:`evoke.heads.full.describe_full` for ``network: cognimuse``; the parameter count is at
    the largest vocabulary (``max_vocab`` words + PAD + UNK: the training split may have fewer).
    MT's branches: ``n_branches`` (None: from the data, as describe_full says)."""
    from evoke.heads.full import branch_counts

    multitask = head == "full_multitask"
    if not multitask:
        n_branches, branches_from = 1, None
    vocab_size = cfg.max_vocab + 2
    net = build_net(cfg, sum(dims.values()), vocab_size, multitask, n_branches or 1)
    one = net if (n_branches or 1) == 1 else build_net(cfg, sum(dims.values()), vocab_size, multitask, 1)
    text = None
    if net.text is not None:
        text = {"max_words": cfg.max_words, "padding": "PAD (index 0) at the end", "unknown_word": "UNK (index 1)",
                "vocabulary": f"the {cfg.max_vocab:,} most frequent words of the training split, + PAD and UNK",
                "embed_dim": cfg.embed_dim, "convolutions": [
                    {"filters": cfg.text_filters, "kernel_size": cfg.kernel_size, "activation": "relu",
                     "max_pool": 2}] * 2,
                "out_dim": net.text.out_dim, "n_parameters": count_parameters(net.text)}
    visual = None
    if net.init_args["visual_dim"]:
        visual = {"extractors": {e: int(d) for e, d in sorted(dims.items())}, "input_dim": net.init_args["visual_dim"],
                  "pooling": "max over the segment's steps", "standardise": cfg.standardise}
    shared = [count_parameters(net.trunk)] if multitask else []
    return {
        "task": task, "head": head, "network": "cognimuse", "modalities": cfg.modalities,
        "visual": visual, "text": text, "fusion_dim": net.fusion_dim,
        "layers": {"shared": list(cfg.shared_layers), "branch": list(cfg.branch_layers)} if multitask
        else {"layers": list(cfg.layers)},
        "layer_activation": "relu", "output_link": ["sigmoid"], "outputs": 1,
        **branch_counts(count_parameters(one), count_parameters(net.branches[0]), n_branches, branches_from),
        "n_parameters_shared": shared[0] if shared else None,
        "loss": network_loss(cfg),
        "class_weights": "n / (2 n_c) per target" if network_loss(cfg) == "bce_class_weighted" else None,
        "l1": cfg.l1, "l1_on": "the fully connected layers' weights",
        "branch_updates": "each branch only on the units its viewer annotated" if multitask else None,
        "optimizer": {"name": "adam", "lr": cfg.train.lr, "batch_size": cfg.train.batch_size,
                      "grad_clip": cfg.train.clip_norm, "weight_decay": cfg.train.weight_decay},
        "epochs": cfg.train.epochs, "patience": cfg.train.patience,
        "n_parameters_at_vocabulary": vocab_size,
        "settings_from_task_defaults": from_defaults, "settings_from_config": from_config,
        "init_args": net.init_args,
    }


def format_cognimuse(d: dict) -> str:
    """:func:`describe_cognimuse`'s dict as text for people."""
    from evoke.heads.full import branches_text, parameters_text

    kind = "multi-task" if d["head"] == "full_multitask" else "single-task"
    lines = [f"{d['task']} / {d['head']}: the COGNIMUSE {kind} network, {parameters_text(d)} "
             f"(at a vocabulary of {d['n_parameters_at_vocabulary']:,}), modalities {d['modalities']}"]
    if d["visual"]:
        v = d["visual"]
        lines.append(f"  visual: {', '.join(f'{e} {n}' for e, n in v['extractors'].items())} = {v['input_dim']}, "
                     f"{v['pooling']}, standardised: {'yes' if v['standardise'] else 'no'}")
    if d["text"]:
        t = d["text"]
        c = t["convolutions"][0]
        lines.append(f"  text: at most {t['max_words']} words ({t['vocabulary']}; {t['padding']}), embedding "
                     f"{t['embed_dim']}, 2 x (conv {c['filters']} x {c['kernel_size']}, relu, max-pool {c['max_pool']})"
                     f" -> {t['out_dim']}  [{t['n_parameters']:,}]")
    lines.append(f"  fused: {d['fusion_dim']}")
    if d["head"] == "full_multitask":
        lines += [f"  shared: {' -> '.join(map(str, d['layers']['shared']))} (relu)  [{d['n_parameters_shared']:,}]",
                  f"  {branches_text(d)}: {' -> '.join(map(str, d['layers']['branch']))} (relu) -> 1, sigmoid"
                  f"  [{d['n_parameters_per_branch']:,} each]; {d['branch_updates']}"]
    else:
        lines.append(f"  layers: {' -> '.join(map(str, d['layers']['layers']))} (relu) -> 1, sigmoid"
                     f"  [{d['n_parameters_per_branch']:,}]")
    opt = d["optimizer"]
    lines += [f"  loss: {d['loss']}" + (f" (class weights {d['class_weights']})" if d["class_weights"] else "")
              + f" + L1 {d['l1']} on {d['l1_on']}",
              f"  optimiser: {opt['name']}, lr {opt['lr']}, batch {opt['batch_size']}, gradient clip "
              f"{opt['grad_clip']}, weight decay {opt['weight_decay']}; {d['epochs']} epochs, patience {d['patience']}",
              f"  from the task's defaults (x-task-defaults): {', '.join(d['settings_from_task_defaults']) or 'none'}",
              f"  from the settings: {', '.join(d['settings_from_config']) or 'none'}"]
    return "\n".join(lines)
