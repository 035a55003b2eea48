#!/usr/bin/env python3
"""Compares category heads on the judgement's training set, outside the service.

Reads the training set (nlp/judgement/train.csv) and the sentence vectors the service cached
for it (MiniLM joined with the multilingual encoder, 896 values a message), then scores, by
five-fold cross-validation on the training set only, the category as told by:

- a linear head on the vectors and character n-grams (an approximation of the service's head,
  without its surface cues and its neighbours' vote),
- a linear head on the vectors alone,
- an RBF-kernel SVM on the vectors,
- a network with one hidden layer on the vectors,

and the learning curve of the SVM (a quarter, half, three quarters and all of each training fold).

Needs numpy, scipy and scikit-learn (`pip install scikit-learn`), and the vectors cached by
`switchboard nlu cross-validate` for the default model (it encodes the training set each time,
reading what is cached and adding what is not):

    python3 scripts/judgement-heads.py [--cache ~/.cache/switchboard/nlp]
"""
import argparse
import csv
import pathlib
import sys

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC

ROOT = pathlib.Path(__file__).resolve().parent.parent
DIMENSION = 896
# A cached record: a 16-byte key, then the vector in little-endian float32.
RECORD = 16 + 4 * DIMENSION


def training_set():
    rows = list(csv.DictReader(open(ROOT / "nlp/judgement/train.csv", encoding="utf-8")))
    texts = [r["text"].strip() for r in rows]
    categories = sorted({r["category"] for r in rows})
    return texts, np.array([categories.index(r["category"]) for r in rows])


def cached_vectors(cache: pathlib.Path, texts):
    """The cache holds the training texts once each, encoded in order of (length in bytes,
    bytes): the file whose record count is that of the distinct texts is the training set's."""
    distinct = sorted(set(texts), key=lambda t: (len(t.encode()), t.encode()))
    for path in sorted(cache.glob("embeddings-*.bin")):
        size = path.stat().st_size
        if size % RECORD == 0 and size // RECORD == len(distinct):
            raw = np.fromfile(path, dtype=np.uint8).reshape(-1, RECORD)[:, 16:].copy().view("<f4")
            at = {t: i for i, t in enumerate(distinct)}
            return path, np.stack([raw[at[t]] for t in texts])
    sys.exit(
        f"no file in {cache} holds exactly the {len(distinct)} training texts' vectors of {DIMENSION}: "
        "delete its embeddings-*.bin files and run `switchboard nlu cross-validate` to write them afresh"
    )


def cross_validate(x, y, texts, make, ngrams=False, folds=5):
    right = []
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=1).split(x, y):
        a, b = x[train], x[test]
        if ngrams:
            grams = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=2, sublinear_tf=True)
            a = sp.hstack([sp.csr_matrix(a * 2), grams.fit_transform([texts[i] for i in train])]).tocsr()
            b = sp.hstack([sp.csr_matrix(b * 2), grams.transform([texts[i] for i in test])]).tocsr()
        right.append((make().fit(a, y[train]).predict(b) == y[test]).mean())
    return 100 * np.mean(right)


def learning_curve(x, y, fractions=(0.25, 0.5, 0.75, 1.0)):
    right = {f: [] for f in fractions}
    for train, test in StratifiedKFold(5, shuffle=True, random_state=1).split(x, y):
        order = np.random.default_rng(0).permutation(train)
        for f in fractions:
            part = order[: int(len(order) * f)]
            right[f].append((len(part), (SVC(C=4, kernel="rbf").fit(x[part], y[part]).predict(x[test]) == y[test]).mean()))
    return {(f, round(np.mean([n for n, _ in r]))): 100 * np.mean([a for _, a in r]) for f, r in right.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=pathlib.Path, default=pathlib.Path.home() / ".cache/switchboard/nlp")
    args = parser.parse_args()
    texts, y = training_set()
    path, x = cached_vectors(args.cache, texts)
    print(f"{len(texts)} training rows, vectors from {path}")
    # Vectors in the wrong order would leave the nearest message's category at chance (the sum of
    # the squared class shares, about 1 in 5).
    nearest = cross_validate(x, y, texts, lambda: KNeighborsClassifier(1, metric="cosine"))
    print(f"nearest training message's category (a check of the vectors' order): {nearest:.1f} %")
    if nearest < 30:
        sys.exit("the vectors do not follow the training texts: delete the cache's embeddings-*.bin and run `switchboard nlu cross-validate`")
    for name, make, ngrams in [
        ("linear head, vectors and character n-grams", lambda: LogisticRegression(C=1, max_iter=300), True),
        ("linear head, vectors alone", lambda: LogisticRegression(C=4, max_iter=500), False),
        ("RBF-kernel SVM, vectors alone (C 4)", lambda: SVC(C=4, kernel="rbf"), False),
        ("RBF-kernel SVM, vectors alone (C 10)", lambda: SVC(C=10, kernel="rbf"), False),
        ("one hidden layer of 512, vectors alone", lambda: MLPClassifier((512,), alpha=1e-3, max_iter=300, early_stopping=True, random_state=0), False),
    ]:
        print(f"{name:<45} category {cross_validate(x, y, texts, make, ngrams):.1f} %", flush=True)
    for (fraction, rows), accuracy in learning_curve(x, y).items():
        print(f"RBF-kernel SVM on {fraction:.0%} of each training fold ({rows} rows): category {accuracy:.1f} %")


if __name__ == "__main__":
    main()
