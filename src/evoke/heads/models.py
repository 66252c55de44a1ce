"""The full head: the EEV network (one GRU per modality, context gating, YouTube-8M's
mixture of experts, context gating on the class outputs), with our former choices as options.

Input: a dict ``{modality: (B, L, D_m)}`` of feature sequences of ``L`` steps
(60 by default; shorter windows are padded by repeating their first step, see
:func:`pad_repeat_first`). Output: ``(B, n_outputs)`` for one branch,
``(B, n_branches, n_outputs)`` for several (multi-task: one branch per viewer
plus the average viewer on a shared trunk).

What follows the papers (EEV: Sun et al. 2021, "EEV: A Large-Scale Dataset for
Studying Evoked Expressions from Video", which establishes its baseline "using
an existing multimodal recurrent model" (its abstract), built from YouTube-8M's
``MoeModel`` and Miech, Laptev & Sivic 2017, "Learnable pooling with Context
Gating for video classification"). The EEV and danmaku figures below are as
issue 15 quotes the papers (their full text was not at hand here); the
YouTube-8M and Miech et al. parts are checked against their released code
(``google/youtube-8m`` ``video_level_models.py``, ``antoine77340/Youtube-8M-WILLOW``):

* one GRU per modality with its own hidden size (EEV: image 512, audio 128,
  face 256, fused 896), ``gru_layers`` layers with dropout between the layers
  and after the last (EEV: dropout 0.3 in each GRU layer; the danmaku LDL
  network stacks 2 layers); the last layer's final state is the modality's
  summary;
* the summaries concatenated, then context gating "with batch normalization
  before the non-linear layer" (EEV): :class:`ContextGating`;
* YouTube-8M's ``video_level_models.MoeModel``, exactly (:class:`MoeModel`):
  "The model consists of a per-class softmax distribution over a configurable
  number of logistic classifiers. One of the classifiers in the mixture is not
  trained, and always predicts 0." (the ``MoeModel`` docstring); the gates
  have no bias (``biases_initializer=None``), the experts do;
* context gating with batch norm on the class probabilities (the
  ``gating_probabilities`` branch of Miech et al.'s ``MoeModel``:
  ``probabilities * sigmoid(BN(probabilities W))``). The outputs are
  probabilities in (0, 1).

Our own, as options beside them (``FullConfig`` keys in :mod:`evoke.heads.full`):

* ``standardise`` (default on): each modality is standardised with the
  training set's per-dimension mean and standard deviation (buffers set by
  :meth:`FullHead.set_input_stats`, saved with the weights) before its GRU;
  the papers feed the features as they are (PCA-whitened in YouTube-8M);
* ``moe="hidden_layer"``: the former evoke head: context gating, a softmax gate
  (with bias) over ``n_experts`` linear experts of a ``moe_dim`` hidden layer,
  ReLU, context gating on that hidden layer, one linear output per branch; the
  outputs are raw scores (V2V's default: a score difference must be able to
  grow past 1);
* ``gating_batch_norm=False``: context gating with a bias instead of batch norm
  (``x * sigmoid(W x + b)``, the former evoke head's).

Batch norm in training mode needs two samples; a training batch of one (the
last, short batch of an epoch) is normalised with the running statistics.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MOE_KINDS = ("youtube8m", "hidden_layer")


def pad_repeat_first(seq: np.ndarray, length: int) -> np.ndarray:
    """(T, ...) -> (length, ...): the last ``length`` steps, padded at the front by
    repeating the first step when T < length (the EEV convention)."""
    if seq.shape[0] == 0:
        raise ValueError("cannot pad an empty sequence")
    if seq.shape[0] >= length:
        return seq[-length:]
    pad = np.repeat(seq[:1], length - seq.shape[0], axis=0)
    return np.concatenate([pad, seq], axis=0)


def resample_steps(seq: np.ndarray, length: int) -> np.ndarray:
    """A whole video as ``length`` steps: evenly spaced steps when longer,
    :func:`pad_repeat_first` when shorter."""
    if seq.shape[0] <= length:
        return pad_repeat_first(seq, length)
    idx = np.linspace(0, seq.shape[0] - 1, length).round().astype(np.int64)
    return seq[idx]


class ContextGating(nn.Module):
    """Context gating (Miech et al. 2017): ``x * sigmoid(BN(x W))`` with ``batch_norm``
    (no bias: batch norm's shift takes its place, as in their ``context_gating``),
    else ``x * sigmoid(x W + b)``. (B, dim) -> (B, dim)."""

    def __init__(self, dim: int, batch_norm: bool = True):
        super().__init__()
        self.fc = nn.Linear(dim, dim, bias=not batch_norm)
        self.bn = nn.BatchNorm1d(dim) if batch_norm else None

    def forward(self, x):
        g = self.fc(x)
        if self.bn is not None:
            if self.training and x.shape[0] == 1:  # one sample has no batch variance
                g = F.batch_norm(g, self.bn.running_mean, self.bn.running_var, self.bn.weight, self.bn.bias,
                                 False, 0.0, self.bn.eps)
            else:
                g = self.bn(g)
        return x * torch.sigmoid(g)


class MoeModel(nn.Module):
    """YouTube-8M's ``MoeModel``: (B, dim_in) -> (B, n_classes) probabilities.

    Per class ``k``: gate activations ``x G_k`` (``n_experts + 1`` of them, no
    bias), a softmax over them, ``n_experts`` logistic experts
    ``sigmoid(x W_k + b_k)``, and ``p_k = sum_e softmax_e * expert_e``: the
    last gate belongs to the dummy expert that always predicts 0, so it only
    takes probability mass away. The weight layout follows the TF code: the
    gate and expert activations are reshaped to ``(B * classes, experts)``,
    so column ``k * (E + 1) + e`` of the gates is class ``k``'s gate ``e``.
    """

    def __init__(self, dim_in: int, n_classes: int, n_experts: int):
        super().__init__()
        self.n_classes, self.n_experts = n_classes, n_experts
        self.gates = nn.Linear(dim_in, n_classes * (n_experts + 1), bias=False)
        self.experts = nn.Linear(dim_in, n_classes * n_experts)

    def forward(self, x):
        gating = torch.softmax(self.gates(x).view(-1, self.n_experts + 1), dim=-1)  # (B*K, E+1)
        experts = torch.sigmoid(self.experts(x).view(-1, self.n_experts))  # (B*K, E)
        return (gating[:, :self.n_experts] * experts).sum(-1).view(-1, self.n_classes)


class HiddenMixture(nn.Module):
    """Our former mixture: ``sum_e softmax(G x + c)_e * (W_e x + b_e)`` with ``n_experts``
    linear experts of width ``dim_out``. (B, dim_in) -> (B, dim_out)."""

    def __init__(self, dim_in: int, dim_out: int, n_experts: int):
        super().__init__()
        self.gate = nn.Linear(dim_in, n_experts)
        self.experts = nn.Linear(dim_in, dim_out * n_experts)
        self.n_experts, self.dim_out = n_experts, dim_out

    def forward(self, x):
        gates = torch.softmax(self.gate(x), dim=-1)  # (B, E)
        out = self.experts(x).view(x.shape[0], self.n_experts, self.dim_out)  # (B, E, O)
        return torch.einsum("be,beo->bo", gates, out)


class ModalityGRU(nn.Module):
    """``layers`` stacked GRUs over (B, L, D): dropout between the layers (``nn.GRU``'s own)
    and after the last; -> the last layer's final state (B, hidden)."""

    def __init__(self, dim_in: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.gru = nn.GRU(dim_in, hidden, num_layers=layers, batch_first=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        _, h = self.gru(x)
        return self.drop(h[-1])


class _Branch(nn.Module):
    """One task output on the fused state: the MoE and its output gating."""

    def __init__(self, fusion_dim: int, n_outputs: int, moe: str, n_experts: int, moe_dim: int,
                 gating_batch_norm: bool, dropout: float):
        super().__init__()
        self.kind = moe
        if moe == "youtube8m":
            self.moe = MoeModel(fusion_dim, n_outputs, n_experts)
            self.gate = ContextGating(n_outputs, gating_batch_norm)
        else:
            self.moe = HiddenMixture(fusion_dim, moe_dim, n_experts)
            self.gate = ContextGating(moe_dim, gating_batch_norm)
            self.drop = nn.Dropout(dropout)
            self.out = nn.Linear(moe_dim, n_outputs)

    def forward(self, x):
        if self.kind == "youtube8m":
            return self.gate(self.moe(x))
        return self.out(self.drop(self.gate(torch.relu(self.moe(x)))))


class FullHead(nn.Module):
    """See the module docstring.

    ``modality_dims``: {name: feature dim}; ``n_outputs``: outputs per branch;
    ``gru_hidden``: {name: GRU width} (or one width for all); ``n_branches``: 1,
    or viewers + 1 for multi-task. :attr:`init_args` holds the arguments (JSON
    types) so that :meth:`from_init_args` rebuilds the module for a saved
    ``state_dict``. :attr:`output_kind` is ``"probability"`` (``moe="youtube8m"``)
    or ``"score"`` (``moe="hidden_layer"``).
    """

    def __init__(self, modality_dims: dict[str, int], n_outputs: int, gru_hidden: int | dict[str, int] = 128,
                 gru_layers: int = 1, dropout: float = 0.3, moe: str = "youtube8m", n_experts: int = 4,
                 moe_dim: int = 256, gating_batch_norm: bool = True, n_branches: int = 1):
        super().__init__()
        if moe not in MOE_KINDS:
            raise ValueError(f"unknown moe {moe!r} (known: {', '.join(MOE_KINDS)})")
        self.modalities = sorted(modality_dims)
        hidden = {m: int(gru_hidden[m] if isinstance(gru_hidden, dict) else gru_hidden) for m in self.modalities}
        self.init_args = {"modality_dims": {m: int(modality_dims[m]) for m in self.modalities},
                          "n_outputs": int(n_outputs), "gru_hidden": hidden, "gru_layers": int(gru_layers),
                          "dropout": float(dropout), "moe": moe, "n_experts": int(n_experts),
                          "moe_dim": int(moe_dim), "gating_batch_norm": bool(gating_batch_norm),
                          "n_branches": int(n_branches)}
        self.output_kind = "probability" if moe == "youtube8m" else "score"
        for m in self.modalities:  # input standardisation (identity until set_input_stats)
            self.register_buffer(f"mean_{m}", torch.zeros(modality_dims[m]))
            self.register_buffer(f"std_{m}", torch.ones(modality_dims[m]))
        self.grus = nn.ModuleDict({m: ModalityGRU(modality_dims[m], hidden[m], gru_layers, dropout)
                                   for m in self.modalities})
        self.fusion_dim = sum(hidden.values())
        self.input_gate = ContextGating(self.fusion_dim, gating_batch_norm)
        # the former head dropped out after its first gate; the paper's drops out in the GRUs only
        self.fused_drop = nn.Dropout(dropout if moe == "hidden_layer" else 0.0)
        self.branches = nn.ModuleList([_Branch(self.fusion_dim, n_outputs, moe, n_experts, moe_dim,
                                               gating_batch_norm, dropout) for _ in range(n_branches)])

    @classmethod
    def from_init_args(cls, args: dict) -> "FullHead":
        return cls(**args)

    def set_input_stats(self, stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """``{modality: (mean (D,), std (D,))}`` of the training inputs; std 0 counts as 1."""
        for m, (mean, std) in stats.items():
            std = np.where(np.asarray(std) > 1e-8, std, 1.0)
            getattr(self, f"mean_{m}").copy_(torch.as_tensor(mean, dtype=torch.float32))
            getattr(self, f"std_{m}").copy_(torch.as_tensor(std, dtype=torch.float32))

    def fused(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The gated concatenation of the modalities' GRU states, (B, fusion_dim)."""
        states = [self.grus[m]((inputs[m] - getattr(self, f"mean_{m}")) / getattr(self, f"std_{m}"))
                  for m in self.modalities]
        return self.fused_drop(self.input_gate(torch.cat(states, dim=-1)))

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """-> (B, n_outputs) for one branch, (B, n_branches, n_outputs) for several."""
        x = self.fused(inputs)
        outs = [b(x) for b in self.branches]
        return outs[0] if len(outs) == 1 else torch.stack(outs, dim=1)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (batch norm's running statistics are buffers, not counted)."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))

