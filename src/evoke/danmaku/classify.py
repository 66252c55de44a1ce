"""Six binary emotion classifiers for comments: a light head and a BERT head.

Emotions (Parrott's primary six as the danmaku seed uses them): like, joy,
surprise, fear, disgust (including anger), sadness. A comment can express
several or none.

**Corpus** (:func:`read_corpus`): CSV/TSV with a text and a label column
(``text,label``; the NLPCC header ``标签,文本`` is recognised too). Labels
are mapped with ``label_map`` (default ``anger=disgust, happiness=joy``; a
label may be mapped to ``none``) and must then be one of the six emotions or
``none`` (several may be joined with ``|`` or ``;``); any other label is an
error that lists them. Extra labelled sets from the labelling loop
(:mod:`evoke.danmaku.loop`: ``text`` and ``y_{emotion}`` columns, 1/0/null)
can be added: a null leaves that emotion's classifier without the example.

**Evaluation** (:func:`train_model`), as the danmaku paper does it: the
labelled texts are split 8:1:1 (seeded, stratified by each text's first
emotion) into train, validation and test parts; the model is chosen on the
validation part (light: the C of :data:`C_GRID` with the best validation
macro AUC; bert: the epoch with the best validation macro AUC) and scored on the
test part: accuracy (threshold 0.5) and ROC AUC per emotion, F1 and support
beside them, and their macro means (``meta["metrics"]``, ``meta["val_metrics"]``).

**Emotions**: the six by default, or ``emotions`` (``--emotions``). An
emotion the corpus cannot train (no positive or no negative example in the
training part) is skipped when it was not asked for by name: it is named in
``meta["missing_emotions"]`` with the reason, a warning is logged, and its
``p_`` column is left out of the scores. Asked for by name, it is an error.

**Heads**:

* ``light``: character 1-3-gram TF-IDF (sublinear; comments normalised: runs
  shortened, URLs and @mentions masked) and one
  L2-regularised logistic regression per emotion (liblinear dual, class
  weights balanced so that rare emotions still cross 0.5; one C for all
  emotions chosen on the validation part, 4 without one). CPU, seconds.
* ``bert``: a Chinese BERT (default ``hfl/chinese-bert-wwm-ext``, BERT-wwm as
  in the seed) fine-tuned with one shared encoder and one sigmoid output per
  emotion trained with per-emotion binary cross-entropy (masked where a label
  is unknown): binary classifiers that share the encoder instead of six
  copies of BERT. Weights come from a local path or the Hugging Face cache;
  when neither has them the run stops and says how to fetch them.

**Model folder**: ``model.json`` (head, emotions, label map, split sizes,
validation and test metrics, versions) plus ``light.joblib`` (pickled
scikit-learn objects: load only folders you trust) or ``bert/``
(``save_pretrained`` model and tokenizer). Written atomically.

**Scores** (:func:`score_comments`): the comment table with one column
``p_{emotion}`` (float64, 0-1) per emotion of the model added.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from evoke import __version__
from evoke.danmaku import EMOTIONS
from evoke.danmaku.parse import DanmakuError
from evoke.labels.common import read_table
from evoke.store import atomic_path

log = logging.getLogger(__name__)

DEFAULT_LABEL_MAP = {"anger": "disgust", "happiness": "joy"}
NONE_LABELS = ("none", "neutral")
DEFAULT_PRETRAINED = "hfl/chinese-bert-wwm-ext"
_TEXT_COLS = ("text", "文本", "content", "comment", "sentence")
_LABEL_COLS = ("label", "标签", "emotion", "labels")


def parse_label_map(text: str | dict | None) -> dict[str, str]:
    """``"happiness=joy,anger=disgust"`` to a dict, on top of :data:`DEFAULT_LABEL_MAP`."""
    out = dict(DEFAULT_LABEL_MAP)
    if not text:
        return out
    if isinstance(text, dict):
        out.update({k.strip().lower(): v.strip().lower() for k, v in text.items()})
        return out
    for item in text.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise DanmakuError(f"label map item '{item}' is not of the form label=emotion")
        k, v = item.split("=", 1)
        out[k.strip().lower()] = v.strip().lower()
    return out


def labels_to_targets(labels: list[str | None], label_map: dict[str, str], source) -> np.ndarray:
    """Single (or ``|``/``;``-joined) labels to an (n, 6) 0/1 matrix; unknown labels raise."""
    y = np.zeros((len(labels), len(EMOTIONS)), dtype=np.float32)
    unknown: dict[str, int] = {}
    idx = {e: k for k, e in enumerate(EMOTIONS)}
    for i, lab in enumerate(labels):
        for part in re.split(r"[|;]", (lab or "").strip().lower()):
            part = part.strip()
            if not part:
                unknown["(empty)"] = unknown.get("(empty)", 0) + 1
                continue
            m = label_map.get(part, part)
            if m in idx:
                y[i, idx[m]] = 1
            elif m not in NONE_LABELS:
                unknown[part] = unknown.get(part, 0) + 1
    if unknown:
        lst = ", ".join(f"{k} ({n})" for k, n in sorted(unknown.items(), key=lambda x: -x[1]))
        raise DanmakuError(f"{source}: labels that are not an emotion ({', '.join(EMOTIONS)}) or none: {lst}; "
                           "map them with --label-map, e.g. happiness=joy,anger=disgust,other=none")
    return y


def read_corpus(path: str | Path, label_map: dict[str, str] | None = None, text_col: str | None = None,
                label_col: str | None = None, encoding: str | None = None) -> pl.DataFrame:
    """A labelled corpus to ``text`` + ``y_{emotion}`` (Int8 0/1) columns; empty texts are skipped."""
    label_map = label_map if label_map is not None else dict(DEFAULT_LABEL_MAP)
    df = read_table(path, "corpus", encoding)
    tcol = text_col or next((c for c in df.columns if c.lower() in _TEXT_COLS), None)
    lcol = label_col or next((c for c in df.columns if c.lower() in _LABEL_COLS), None)
    if tcol not in df.columns or lcol not in df.columns:
        raise DanmakuError(f"{path}: corpus needs a text and a label column (text,label or 标签,文本); "
                           f"it has {', '.join(df.columns)}")
    df = df.filter(pl.col(tcol).is_not_null() & (pl.col(tcol) != ""))
    if df.height == 0:
        raise DanmakuError(f"{path}: corpus has no texts")
    y = labels_to_targets(df[lcol].to_list(), label_map, path)
    return pl.DataFrame({"text": df[tcol].to_list(),
                         **{f"y_{e}": pl.Series(y[:, k], dtype=pl.Int8) for k, e in enumerate(EMOTIONS)}})


def targets(df: pl.DataFrame) -> np.ndarray:
    """``y_*`` columns to a float matrix with NaN for unknown."""
    cols = [f"y_{e}" for e in EMOTIONS]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DanmakuError(f"labelled set lacks column(s) {', '.join(missing)}")
    return df.select(pl.col(c).cast(pl.Float64) for c in cols).to_numpy()


# --------------------------------------------------------------------------- text


_URL = re.compile(r"https?://\S+")
_AT = re.compile(r"@[^\s:：,，]+")
_RUN = re.compile(r"(.)\1{3,}")


def preprocess(text: str) -> str:
    """What the light head sees: lower case, URLs and @mentions masked, runs shortened to 3."""
    text = _URL.sub(" ", text or "")
    text = _AT.sub("@", text)
    return _RUN.sub(r"\1\1\1", text).lower()


# --------------------------------------------------------------------------- heads


C_GRID = (1.0, 2.0, 4.0, 8.0)


def _both_classes(col: np.ndarray) -> bool:
    known = col[~np.isnan(col)]
    return known.size > 0 and known.min() != known.max()


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    known = ~np.isnan(y)
    yk = y[known].astype(int)
    return float(roc_auc_score(yk, p[known])) if np.unique(yk).size == 2 else None


@dataclass
class LightHead:
    """Character n-gram TF-IDF + one logistic regression per emotion (columns of ``y``).

    ``C`` None: one C for all the emotions, the value of :data:`C_GRID` with
    the best validation macro AUC (one shared value: a rare emotion's own
    validation AUC, from a dozen positives, picks its C by chance); 4 without
    a validation part."""

    ngram_range: tuple[int, int] = (1, 3)
    min_df: int = 1
    C: float | None = None
    class_weight: str | None = "balanced"
    vectorizer: object = None
    classifiers: list = field(default_factory=list)
    chosen_C: list = field(default_factory=list)

    def fit(self, texts: list[str], y: np.ndarray, val: tuple[list[str], np.ndarray] | None = None,
            emotions: list[str] | None = None, chosen_C: list[float] | None = None) -> "LightHead":
        from sklearn.feature_extraction.text import TfidfVectorizer

        emotions = emotions or list(EMOTIONS)
        min_df = self.min_df if len(texts) >= 200 else 1
        self.vectorizer = TfidfVectorizer(analyzer="char", ngram_range=tuple(self.ngram_range), min_df=min_df,
                                          sublinear_tf=True, preprocessor=preprocess, dtype=np.float32)
        X = self.vectorizer.fit_transform(texts)
        for k, e in enumerate(emotions):
            yk = y[~np.isnan(y[:, k]), k]
            if len(np.unique(yk)) < 2:
                raise DanmakuError(f"cannot train the '{e}' classifier: the training data has "
                                   f"{'no' if yk.sum() == 0 else 'only'} positive examples of it")
        scored = [k for k in range(len(emotions)) if val is not None and len(val[0]) and _both_classes(val[1][:, k])]
        if chosen_C is not None:
            grid = [tuple(chosen_C)]
        elif self.C is not None or not scored:
            grid = [(self.C or 4.0,) * len(emotions)]
        else:
            grid = [(C,) * len(emotions) for C in C_GRID]
        Xv = self.vectorizer.transform(val[0]) if len(grid) > 1 else None
        best = None
        for Cs in grid:
            clfs = [self._fit_one(X, y[:, k], Cs[k]) for k in range(len(emotions))]
            score = float(np.mean([_auc(val[1][:, k], clfs[k].predict_proba(Xv)[:, 1]) for k in scored])) \
                if Xv is not None else 0.0
            if best is None or score > best[0]:
                best = (score, Cs, clfs)
        self.chosen_C, self.classifiers = list(best[1]), best[2]
        return self

    def _fit_one(self, X, col: np.ndarray, C: float):
        from sklearn.linear_model import LogisticRegression

        known = ~np.isnan(col)
        # the dual problem: far fewer texts than n-grams (4-5x faster here, same model)
        clf = LogisticRegression(C=C, class_weight=self.class_weight, solver="liblinear", dual=True, max_iter=1000)
        return clf.fit(X[known], col[known].astype(int))

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.classifiers)))
        X = self.vectorizer.transform(texts)
        return np.column_stack([c.predict_proba(X)[:, 1] for c in self.classifiers])

    def save(self, folder: Path) -> None:
        import joblib
        joblib.dump({"vectorizer": self.vectorizer, "classifiers": self.classifiers,
                     "ngram_range": self.ngram_range, "C": self.chosen_C}, folder / "light.joblib")

    @classmethod
    def load(cls, folder: Path) -> "LightHead":
        import joblib
        d = joblib.load(folder / "light.joblib")
        return cls(ngram_range=tuple(d["ngram_range"]), vectorizer=d["vectorizer"], classifiers=d["classifiers"],
                   chosen_C=list(np.atleast_1d(d["C"])))


def _load_pretrained(name: str, num_labels: int):
    from transformers import AutoTokenizer, BertForSequenceClassification

    try:
        tok = AutoTokenizer.from_pretrained(name)
        model = BertForSequenceClassification.from_pretrained(
            name, num_labels=num_labels, problem_type="multi_label_classification")
    except OSError as exc:
        raise DanmakuError(
            f"{name}: BERT weights not found locally and the hub is unreachable ({str(exc).splitlines()[0]}); "
            f"on a machine with internet run `huggingface-cli download {name}` (or save the model with "
            "save_pretrained) and pass --pretrained PATH") from None
    return tok, model


@dataclass
class BertHead:
    """A BERT encoder with six sigmoid outputs (six binary classifiers sharing the encoder)."""

    pretrained: str = DEFAULT_PRETRAINED
    epochs: int = 3
    batch_size: int = 32
    lr: float = 3e-5
    max_length: int = 64
    seed: int = 0
    device: str | None = None
    tokenizer: object = None
    model: object = None
    loss_history: list = field(default_factory=list)
    val_history: list = field(default_factory=list)
    best_epoch: int | None = None

    def _device(self):
        import torch
        return torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def fit(self, texts: list[str], y: np.ndarray, val: tuple[list[str], np.ndarray] | None = None,
            emotions: list[str] | None = None) -> "BertHead":
        """Fine-tune; with ``val``, keep the epoch with the best validation macro AUC."""
        import copy

        import torch

        torch.manual_seed(self.seed)
        emotions = emotions or list(EMOTIONS)
        for k, e in enumerate(emotions):
            col = y[:, k][~np.isnan(y[:, k])]
            if col.size == 0 or col.min() == col.max():
                raise DanmakuError(f"cannot train the '{e}' classifier: the training data has "
                                   f"{'no' if col.sum() == 0 else 'only'} positive examples of it")
        self.tokenizer, self.model = _load_pretrained(self.pretrained, len(emotions))
        best = None
        dev = self._device()
        model = self.model.to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=0.01)
        mask_all = torch.tensor(~np.isnan(y), dtype=torch.float32)
        target_all = torch.tensor(np.nan_to_num(y, nan=0.0), dtype=torch.float32)
        n = len(texts)
        steps = max(1, math.ceil(n / self.batch_size)) * self.epochs
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10))
                                                  * max(0.0, (steps - s) / steps))
        gen = torch.Generator().manual_seed(self.seed)
        model.train()
        from tqdm import tqdm

        for epoch in range(self.epochs):
            order = torch.randperm(n, generator=gen).tolist()
            total = 0.0
            for b in tqdm(range(0, n, self.batch_size), desc=f"bert epoch {epoch + 1}/{self.epochs}",
                          unit="batch", disable=None, leave=False):
                idx = order[b:b + self.batch_size]
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt").to(dev)
                logits = model(**enc).logits
                m, t = mask_all[idx].to(dev), target_all[idx].to(dev)
                loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, t, reduction="none") * m
                        ).sum() / m.sum().clamp(min=1)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            self.loss_history.append(round(total / max(n, 1), 5))
            log.info("bert epoch %d/%d: loss %.4f", epoch + 1, self.epochs, self.loss_history[-1])
            if val is not None and len(val[0]):
                aucs = [a for a in (_auc(val[1][:, k], p) for k, p in
                                    enumerate(self.predict_proba(val[0]).T)) if a is not None]
                score = float(np.mean(aucs)) if aucs else 0.0
                self.val_history.append(round(score, 5))
                if best is None or score > best[0]:
                    best = (score, epoch + 1, copy.deepcopy(model.state_dict()))
                model.train()
        if best is not None:
            model.load_state_dict(best[2])
            self.best_epoch = best[1]
        model.eval()
        return self

    def predict_proba(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.model.config.num_labels))
        dev = self._device()
        model = self.model.to(dev).eval()
        out = []
        with torch.inference_mode():
            for b in range(0, len(texts), batch_size):
                enc = self.tokenizer(texts[b:b + batch_size], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt").to(dev)
                out.append(torch.sigmoid(model(**enc).logits.float()).cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    def save(self, folder: Path) -> None:
        self.model.save_pretrained(folder / "bert")
        self.tokenizer.save_pretrained(folder / "bert")

    @classmethod
    def load(cls, folder: Path, meta: dict) -> "BertHead":
        from transformers import AutoTokenizer, BertForSequenceClassification

        head = cls(pretrained=meta.get("pretrained", DEFAULT_PRETRAINED), max_length=meta.get("max_length", 64))
        head.tokenizer = AutoTokenizer.from_pretrained(folder / "bert")
        head.model = BertForSequenceClassification.from_pretrained(folder / "bert")
        return head


# --------------------------------------------------------------------------- train / load / score


def evaluate(y_true: np.ndarray, proba: np.ndarray, threshold: float = 0.5,
             emotions: list[str] | None = None) -> dict:
    """Per emotion (columns): accuracy at ``threshold`` and ROC AUC (the danmaku paper's two),
    F1 and support; and their macro means over the emotions where each is defined."""
    from sklearn.metrics import f1_score

    emotions = emotions or list(EMOTIONS)
    per = {}
    for k, e in enumerate(emotions):
        known = ~np.isnan(y_true[:, k])
        yt, pk = y_true[known, k].astype(int), proba[known, k]
        per[e] = {"accuracy": float(((pk >= threshold) == yt).mean()) if yt.size else None,
                  "auc": _auc(y_true[:, k], proba[:, k]),
                  "f1": float(f1_score(yt, pk >= threshold, zero_division=0)) if yt.size else None,
                  "support": int(yt.sum()), "n": int(yt.size)}

    def macro(key):
        vals = [v[key] for v in per.values() if v[key] is not None]
        return float(np.mean(vals)) if vals else None

    return {"per_emotion": per, "macro_auc": macro("auc"), "macro_accuracy": macro("accuracy"),
            "macro_f1": macro("f1"), "threshold": threshold}


DEFAULT_SPLIT = (0.8, 0.1, 0.1)


def split_train_val_test(n: int, y: np.ndarray, seed: int = 0,
                         fractions: tuple[float, float, float] = DEFAULT_SPLIT
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded train/validation/test indices in ``fractions`` (8:1:1 by default), stratified by each
    text's first positive emotion (or none): every stratum is split in the same proportions."""
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (3,) or (fr < 0).any() or fr[0] <= 0 or not np.isclose(fr.sum(), 1.0):
        raise DanmakuError(f"split must be three non-negative fractions summing to 1 (train > 0), got {fractions}")
    rng = np.random.default_rng(seed)
    y0 = np.nan_to_num(y)
    strata = np.where(y0.max(axis=1) > 0, y0.argmax(axis=1), -1)
    parts = ([], [], [])
    for s_ in np.unique(strata):
        idx = np.flatnonzero(strata == s_)
        rng.shuffle(idx)
        n_val, n_test = int(round(len(idx) * fr[1])), int(round(len(idx) * fr[2]))
        parts[2].extend(idx[:n_test].tolist())
        parts[1].extend(idx[n_test:n_test + n_val].tolist())
        parts[0].extend(idx[n_test + n_val:].tolist())
    return tuple(np.array(sorted(p), dtype=np.int64) for p in parts)


def supported_emotions(y: np.ndarray, wanted: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The emotions ``y`` (N, 6) can train (a positive and a negative example), and the others with
    the reason. ``wanted`` (names) restricts them; a wanted emotion that cannot be trained raises."""
    bad = [e for e in (wanted or []) if e not in EMOTIONS]
    if bad:
        raise DanmakuError(f"unknown emotion(s) {', '.join(bad)}; the emotions are {', '.join(EMOTIONS)}")
    names = [e for e in EMOTIONS if wanted is None or e in wanted]
    ok, missing = [], {}
    for e in names:
        col = y[:, EMOTIONS.index(e)]
        known = col[~np.isnan(col)]
        if known.sum() == 0:
            missing[e] = "no positive example"
        elif known.min() == 1:
            missing[e] = "no negative example"
        else:
            ok.append(e)
    if wanted is not None and missing:
        raise DanmakuError("cannot train the requested emotion(s): "
                           + "; ".join(f"'{e}': the training data has {r}" for e, r in missing.items()))
    if not ok:
        raise DanmakuError("the corpus supports no emotion: " + "; ".join(f"{e}: {r}" for e, r in missing.items()))
    return ok, missing


@dataclass
class EmotionModel:
    """A trained head with its metadata (``model.json``)."""

    head_name: str
    head: object
    meta: dict

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.head.predict_proba(texts)

    def save(self, out: str | Path) -> Path:
        out = Path(out)
        with atomic_path(out) as tmp:
            tmp.mkdir(parents=True)
            self.head.save(tmp)
            (tmp / "model.json").write_text(json.dumps(self.meta, indent=1, ensure_ascii=False), encoding="utf-8")
        return out


def train_model(data: pl.DataFrame, head: str = "light", split: tuple[float, float, float] = DEFAULT_SPLIT,
                seed: int = 0, label_map: dict | None = None, refit: bool | None = None,
                emotions: list[str] | None = None, **head_options) -> EmotionModel:
    """Train a head on ``text`` + ``y_*`` rows (see :func:`read_corpus`).

    ``split`` (train, validation, test) fractions, 8:1:1 by default (the
    danmaku paper's): the model is chosen on the validation part and scored
    on the test part (``meta["metrics"]``; ``meta["val_metrics"]`` on the
    validation part); ``(1, 0, 0)`` trains on everything, unscored. The light
    head is then refitted on every text with the chosen settings (``refit``,
    default true for it); the BERT head keeps the chosen model (``refit``
    false by default: fine-tuning twice is expensive). ``emotions``: the
    emotions to train (default: every one the corpus supports, see the module
    docstring).
    """
    refit = (head == "light") if refit is None else refit
    texts = data["text"].to_list()
    y_all = targets(data)
    if head not in ("light", "bert"):
        raise DanmakuError(f"unknown head '{head}' (light, bert)")
    tr, va, te = split_train_val_test(len(texts), y_all, seed, split)
    names, missing = supported_emotions(y_all[tr], list(emotions) if emotions else None)
    for e, why in missing.items():
        log.warning("danmaku: the corpus cannot train '%s' (%s in the training part): left out, "
                    "no p_%s column will be written", e, why, e)
    y = y_all[:, [EMOTIONS.index(e) for e in names]]
    make = (lambda: LightHead(**head_options)) if head == "light" else \
        (lambda: BertHead(seed=seed, **head_options))  # noqa: E731
    pick = lambda idx: [texts[i] for i in idx]  # noqa: E731
    meta = {"head": head, "emotions": names, "missing_emotions": missing, "label_map": label_map or {},
            "positives": {e: int(np.nansum(y_all[:, EMOTIONS.index(e)])) for e in EMOTIONS},
            "evoke_version": __version__, "seed": seed, "split": list(split),
            "n_split": {"train": int(len(tr)), "val": int(len(va)), "test": int(len(te))}}
    t0 = time.perf_counter()
    val = (pick(va), y[va]) if len(va) else None
    model = make().fit(pick(tr), y[tr], val=val, emotions=names)
    meta["val_metrics"] = evaluate(y[va], model.predict_proba(pick(va)), emotions=names) if len(va) else None
    meta["metrics"] = evaluate(y[te], model.predict_proba(pick(te)), emotions=names) if len(te) else None
    if meta["metrics"]:
        m = meta["metrics"]
        log.info("%s head: test macro AUC %.3f, macro accuracy %.3f on %d texts (model chosen on %d)", head,
                 m["macro_auc"] or float("nan"), m["macro_accuracy"] or float("nan"), len(te), len(va))
    meta["n_train"] = int(len(tr))
    if refit and (len(va) or len(te)):
        chosen = model.chosen_C if head == "light" else None
        model = make().fit(texts, y, emotions=names, **({"chosen_C": chosen} if head == "light" else {}))
        meta["n_train"] = len(texts)
    meta["refit"] = bool(refit and (len(va) or len(te)))
    meta["train_seconds"] = round(time.perf_counter() - t0, 3)
    if head == "light":
        import sklearn
        meta.update(sklearn_version=sklearn.__version__, ngram_range=list(model.ngram_range),
                    C=dict(zip(names, model.chosen_C)))
    else:
        import transformers
        meta.update(transformers_version=transformers.__version__, pretrained=model.pretrained,
                    max_length=model.max_length, epochs=model.epochs, lr=model.lr, batch_size=model.batch_size,
                    train_loss=model.loss_history, val_macro_auc=model.val_history, best_epoch=model.best_epoch)
    return EmotionModel(head, model, meta)


def load_model(folder: str | Path) -> EmotionModel:
    folder = Path(folder)
    meta_path = folder / "model.json"
    if not meta_path.is_file():
        raise DanmakuError(f"{folder}: not a danmaku model folder (no model.json); "
                           "train one with `evoke danmaku train`")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    emotions = meta.get("emotions") or []
    if not emotions or any(e not in EMOTIONS for e in emotions):
        raise DanmakuError(f"{folder}: model emotions {emotions} are not among {list(EMOTIONS)}")
    if meta["head"] == "light":
        head = LightHead.load(folder)
    elif meta["head"] == "bert":
        head = BertHead.load(folder, meta)
    else:
        raise DanmakuError(f"{folder}: unknown head '{meta['head']}'")
    return EmotionModel(meta["head"], head, meta)


def score_comments(model: EmotionModel, comments: pl.DataFrame, batch: int = 50_000) -> pl.DataFrame:
    """``comments`` (a ``text`` column) with ``p_{emotion}`` columns added."""
    if "text" not in comments.columns:
        raise DanmakuError("comments table has no 'text' column")
    texts = comments["text"].fill_null("").to_list()
    emotions = model.meta["emotions"]
    parts = [model.predict_proba(texts[b:b + batch]) for b in range(0, len(texts), batch)]
    P = np.concatenate(parts) if parts else np.zeros((0, len(emotions)))
    return comments.with_columns(pl.Series(f"p_{e}", P[:, k], dtype=pl.Float64) for k, e in enumerate(emotions))
