"""Distils all-MiniLM-L6-v2 into static token vectors for the classifier's first stage.

Each vocabulary entry is run through the exact model alone ([CLS] token [SEP]) and its own output
vector kept; the table is centred, reduced to 256 dimensions (principal components) and each row
weighted by log(id + 2), which in this vocabulary grows as words get rarer (Zipf). A text's static
vector is then the mean of its tokens' rows: microseconds instead of milliseconds, and sure enough
for plain questions (BENCHMARKS.md). Run by ./scripts/fetch-model.sh.
Usage: python3 static-embeddings.py MODEL_DIR OUT_FILE
"""
import json, struct, sys
import numpy as np
import onnxruntime as ort

model_dir, out_file = sys.argv[1:3]
DIMENSIONS = 256
vocab_size = json.load(open(f"{model_dir}/config.json"))["vocab_size"]
options = ort.SessionOptions()
session = ort.InferenceSession(f"{model_dir}/model.onnx", options)
table = np.zeros((vocab_size, 384), np.float64)
BATCH = 1024
for start in range(0, vocab_size, BATCH):
    ids = np.arange(start, min(vocab_size, start + BATCH), dtype=np.int64)
    x = np.stack([np.full_like(ids, 101), ids, np.full_like(ids, 102)], 1)
    out = session.run(None, {"input_ids": x, "attention_mask": np.ones_like(x), "token_type_ids": np.zeros_like(x)})[0]
    table[start:start + len(ids)] = out[:, 1]
table -= table.mean(0)
_, _, components = np.linalg.svd(table, full_matrices=False)
table = table @ components[:DIMENSIONS].T
table *= np.log(np.arange(vocab_size) + 2.0)[:, None]
data = table.astype("<f4").tobytes()
header = json.dumps({"embeddings": {"dtype": "F32", "shape": [vocab_size, DIMENSIONS], "data_offsets": [0, len(data)]}}).encode()
header += b" " * (-len(header) % 8)
with open(out_file, "wb") as f:
    f.write(struct.pack("<Q", len(header)))
    f.write(header)
    f.write(data)
print(f"wrote {out_file}: {vocab_size} token vectors of {DIMENSIONS}")
