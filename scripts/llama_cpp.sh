#!/usr/bin/env bash
# Install llama-cpp-python (the `gguf` extra) for make test-ci's llama.cpp check of GGUF exports.
#
# PyPI has only its source, so pip builds llama.cpp (~8 minutes on 2 cores). Two things made that build
# unreliable (docs/export.md, "What is compared"):
#   * a native build (-march=native) on an AVX-512/AMX CPU crashes on quantised files, and a wheel built
#     natively on one CPU dies with SIGILL on another;
#   * pip's wheel cache is keyed by the package alone, not by CMAKE_ARGS, so a wheel built with other
#     flags (or on another CPU) is silently reused.
# So the instruction sets are chosen from what this CPU reports (never AVX-512), the wheel is built with
# pip's cache off into .cache/llama-cpp/<key>, keyed by the flags and the version, and reinstalled only
# when that key changes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SPEC="llama-cpp-python==0.3.36"

args="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF"
args="$args -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_AVX_VNNI=OFF"
if [ "$(uname -m)" = x86_64 ]; then
  flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
  for feature in avx avx2 fma f16c bmi2; do
    name=$(echo "$feature" | tr '[:lower:]' '[:upper:]')
    case "$flags" in
      *" $feature "*) args="$args -DGGML_$name=ON" ;;
      *) args="$args -DGGML_$name=OFF" ;;
    esac
  done
fi
key=$(echo "$SPEC $args" | sha1sum | cut -c1-12)
stamp=.venv/.llama-cpp-$key
if [ -f "$stamp" ] && $PY -c "import llama_cpp" 2>/dev/null; then
  exit 0
fi
wheels=.cache/llama-cpp/$key
if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "[llama.cpp] building $SPEC with: $args (about 8 minutes on 2 cores)"
  mkdir -p "$wheels"
  CMAKE_ARGS="$args" $PY -m pip wheel -q --no-deps --no-cache-dir -w "$wheels" "$SPEC"
fi
$PY -m pip install -q --force-reinstall --no-deps "$wheels"/llama_cpp_python-*.whl
$PY -m pip install -q "$wheels"/llama_cpp_python-*.whl  # its own dependencies (numpy, jinja2, diskcache)
rm -f .venv/.llama-cpp-*
touch "$stamp"
$PY -c "import llama_cpp; print('[llama.cpp] built for:', llama_cpp.llama_print_system_info().decode().strip())"
