#!/usr/bin/env bash
# Fetches a CPU libtorch 2.4 for the optional rust-bert encoder (`cargo build --features rust-bert`).
# It is cut from PyPI's torch 2.4.1 wheel, so download.pytorch.org is not needed: the headers,
# libc10, libtorch_cpu and its OpenMP, plus the two small CUDA libraries libtorch_cpu links to.
# libtorch.so points at libtorch_cpu.so: the wheel's own libtorch.so pulls in ~900 MB of CUDA.
# Idempotent: does nothing when the libtorch is already there. Downloads ~800 MB; keeps ~480 MB.
# Usage: ./scripts/fetch-libtorch.sh [target dir]   (default: $HOME/.cache/switchboard/libtorch)
set -euo pipefail

target="${1:-${SWITCHBOARD_LIBTORCH_DIR:-$HOME/.cache/switchboard/libtorch}}"

print_exports() {
  echo "build with:"
  echo "  export LIBTORCH=\"$target\" LIBTORCH_CXX11_ABI=0"
  echo "  CARGO_TARGET_DIR=\$HOME/.cache/switchboard/target-rust-bert cargo build --release --features rust-bert"
}

if [ -s "$target/lib/libtorch_cpu.so" ] && [ -f "$target/include/torch/script.h" ] && [ -f "$target/.complete" ]; then
  echo "libtorch present in $target"
  print_exports
  exit 0
fi

if [ "$(uname -m)" != "x86_64" ]; then
  echo "error: this script cuts libtorch from the x86_64 Linux wheel; on $(uname -m), install" \
    "libtorch 2.4 yourself and set LIBTORCH to its directory" >&2
  exit 1
fi

missing=()
command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 || missing+=(python3 python3-pip)
command -v unzip >/dev/null || missing+=(unzip)
"$(dirname "$0")/apt-install.sh" ${missing[@]+"${missing[@]}"}

# Pinned wheels; the C++ libraries inside do not depend on the Python version asked for here.
wheels=(
  "torch==2.4.1 0b5f88afdfa05a335d80351e3cea57d38e578c8689f751d35e0ff36bce872113"
  "nvidia-cuda-runtime-cu12==12.1.105 6e258468ddf5796e25f1dc591a31029fa317d97a0a94ed93468fc86301d61e40"
  "nvidia-cuda-cupti-cu12==12.1.105 e54fde3983165c624cb79254ae9818a456eb6e87a7fd4d56a2352c24ee542d7e"
)

mkdir -p "$(dirname "$target")"
# Next to the target rather than in /tmp, which may be too small for the 800 MB wheel.
work="$(mktemp -d "$(dirname "$target")/.libtorch-fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "downloading torch 2.4.1 and two CUDA runtime wheels from PyPI (~800 MB)"
for entry in "${wheels[@]}"; do
  requirement="${entry% *}"
  sha256="${entry#* }"
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux1_x86_64 --python-version 3.11 --implementation cp --abi cp311 \
    "$requirement" -d "$work/wheels"
  name="${requirement%%==*}"
  wheel="$(ls "$work/wheels/${name//-/_}"-*.whl)"
  echo "$sha256  $wheel" | sha256sum --check --quiet || {
    echo "error: $(basename "$wheel") does not have the expected SHA-256; not installing it" >&2
    exit 1
  }
done

out="$work/libtorch"
mkdir -p "$out/lib"
unzip -q "$work/wheels"/torch-*.whl 'torch/include/*' 'torch/lib/libc10.so' 'torch/lib/libtorch_cpu.so' \
  'torch/lib/libgomp-*.so.1' -d "$work/torch"
mv "$work/torch/torch/include" "$out/include"
mv "$work/torch/torch/lib/"* "$out/lib/"
unzip -q -j "$work/wheels"/nvidia_cuda_runtime_cu12-*.whl 'nvidia/cuda_runtime/lib/libcudart.so.12' -d "$out/lib"
unzip -q -j "$work/wheels"/nvidia_cuda_cupti_cu12-*.whl 'nvidia/cuda_cupti/lib/libcupti.so.12' -d "$out/lib"
ln -s libtorch_cpu.so "$out/lib/libtorch.so"
echo "torch 2.4.1 (PyPI wheel), CPU libraries only" > "$out/.complete"

rm -rf "$target.partial"
mv "$out" "$target.partial"
rm -rf "$target"
mv "$target.partial" "$target"
echo "libtorch installed in $target"
print_exports
