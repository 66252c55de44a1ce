"""Danmaku classifier benchmark (issue 13, item 8): evoke's light head against a plain baseline.

The baseline is the one the issue measures against: character 1-3-gram TF-IDF
(scikit-learn defaults otherwise) and scikit-learn's default logistic
regression, one per emotion. evoke's light head is :func:`evoke.danmaku.classify.train_model`
(``head="light"``, ``refit=False``, so both are scored on a model that never
saw the test part). Both use the same seeded 8:1:1 split
(:func:`split_train_val_test`); the baseline trains on the train part (it has
nothing to choose on validation), evoke trains on the train part and chooses
its C on the validation part. Reported: test ROC AUC per emotion, the macro
over joy, sadness, disgust and surprise (the issue's four) and over all six,
per seed and their mean, with the fit time of each (a ratio: the machine is
shared).

Data: real labelled Chinese text from ``../shared/data`` beside the project
(dev/bench only, never committed): the NLPCC 2013 Weibo emotion corpus. The
script prints a note and exits 0 when that folder is absent (a user's clone).
No labelled danmaku with video ids exists there, so this is a split over
texts, not over videos.

    .venv/bin/python bench/danmaku_classifier.py [--data ../shared/data] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FOUR = ("joy", "sadness", "disgust", "surprise")
NLPCC = Path("text-emotion") / "nlpcc2013_weibo_emotion.csv"


def baseline_aucs(texts, y, tr, te) -> dict[str, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from evoke.danmaku import EMOTIONS

    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3))
    X, Xt = vec.fit_transform([texts[i] for i in tr]), vec.transform([texts[i] for i in te])
    out = {}
    for k, e in enumerate(EMOTIONS):
        clf = LogisticRegression(max_iter=1000).fit(X, y[tr, k].astype(int))
        out[e] = float(roc_auc_score(y[te, k], clf.predict_proba(Xt)[:, 1]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "danmaku_classifier.json")
    args = ap.parse_args(argv)
    path = args.data / NLPCC
    if not path.is_file():
        print(f"skipped: {path} is not there (dev data beside the project, not part of a clone)")
        return 0
    sys.path.insert(0, str(REPO / "src"))
    from evoke.danmaku import EMOTIONS
    from evoke.danmaku.classify import parse_label_map, read_corpus, split_train_val_test, targets, train_model

    data = read_corpus(path, parse_label_map("happiness=joy,anger=disgust,none=none"))
    texts, y = data["text"].to_list(), targets(data)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        tr, va, te = split_train_val_test(len(texts), y, seed)
        t0 = time.perf_counter()
        base = baseline_aucs(texts, y, tr, te)
        t_base = time.perf_counter() - t0
        t0 = time.perf_counter()
        meta = train_model(data, "light", seed=seed, refit=False).meta
        t_evoke = time.perf_counter() - t0
        ours = {e: v["auc"] for e, v in meta["metrics"]["per_emotion"].items()}
        for name, aucs, secs in (("baseline", base, t_base), ("evoke light", ours, t_evoke)):
            rows.append({"seed": seed, "model": name, "four": float(np.mean([aucs[e] for e in FOUR])),
                         "six": float(np.mean([aucs[e] for e in EMOTIONS])), "per_emotion": aucs,
                         "fit_s": secs, "C": meta["C"] if name != "baseline" else None,
                         "n": {"train": len(tr), "val": len(va), "test": len(te)}})
            print(f"seed {seed} {name:12s} macro AUC four {rows[-1]['four']:.4f} six {rows[-1]['six']:.4f} "
                  f"({secs:.1f} s) " + " ".join(f"{e} {aucs[e]:.3f}" for e in EMOTIONS), flush=True)
    for name in ("baseline", "evoke light"):
        sel = [r for r in rows if r["model"] == name]
        print(f"mean over {len(sel)} seeds, {name:12s}: four {np.mean([r['four'] for r in sel]):.4f}, "
              f"six {np.mean([r['six'] for r in sel]):.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
