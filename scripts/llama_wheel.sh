#!/bin/sh
# Install llama-cpp-python built from its PyPI sdist with lift-sys's llama.cpp
# patches (scripts/llama_patches/*.patch) applied, for this CPU's flags.
#
# Usage: sh scripts/llama_wheel.sh PYTHON
#
# Why a patched build: the batched engine's flash attention for a quantized K
# cache (see the patch's header) is ours; stock llama.cpp runs an online
# per-row loop there that costs 7 % of an 8-sequence step on the 2-core box.
#
# The wheel is built once per (version, patches, CMake flags) and kept in
# $LIFT_CACHE_DIR/wheels (default ~/.cache/lift-sys/wheels): pip does not
# cache wheels it builds from a local source tree, and a rebuild is the
# ~4-10 minutes of a first `make`. A later clone on the same machine (CI)
# installs the cached wheel in seconds.
set -eu
PY=$1
VERSION=0.3.36  # the pin in pyproject.toml: a different pin would replace this wheel with a stock one (the test of LIFT_PATCHES fails)
HERE=$(cd "$(dirname "$0")" && pwd)
FLAGS=$(sh "$HERE/llama_cmake_args.sh")
PATCHES=$(cat "$HERE"/llama_patches/*.patch | sha256sum | cut -c1-16)
KEY=$(echo "$VERSION $FLAGS $PATCHES" | sha256sum | cut -c1-16)
CACHE_ROOT=${LIFT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lift-sys}
DEST=$CACHE_ROOT/wheels/llama-cpp-python-$VERSION-$KEY

if ! ls "$DEST"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $VERSION with $(ls "$HERE"/llama_patches/*.patch | wc -l) lift-sys patch(es) (once per machine; several minutes)"
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
    "$PY" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK"
    tar xzf "$WORK/llama_cpp_python-$VERSION.tar.gz" -C "$WORK"
    SRC=$WORK/llama_cpp_python-$VERSION
    for p in "$HERE"/llama_patches/*.patch; do
        if command -v patch >/dev/null 2>&1; then
            patch --quiet --forward -p1 -d "$SRC/vendor/llama.cpp" < "$p"
        elif command -v git >/dev/null 2>&1; then
            # the sdist carries a .git of its own: outside any repository, git apply patches the cwd
            (cd "$SRC/vendor/llama.cpp" && GIT_CEILING_DIRECTORIES="$SRC/vendor" git apply -p1 "$p")
        else
            echo "llama_wheel.sh: need 'patch' or 'git' to apply $p (apt-get install patch)" >&2
            exit 1
        fi
    done
    # the installed package names its patches (tests/test_llama_kernels.py checks it is this set)
    echo "$PATCHES" > "$SRC/llama_cpp/LIFT_PATCHES"
    CMAKE_ARGS="$FLAGS" "$PY" -m pip wheel --progress-bar off --no-deps -w "$WORK/wheel" "$SRC"
    mkdir -p "$DEST.part"
    cp "$WORK"/wheel/llama_cpp_python-*.whl "$DEST.part/"
    rm -rf "$DEST" && mv "$DEST.part" "$DEST"
fi
# --force-reinstall: a stock build of the same version may already be installed
"$PY" -m pip install --progress-bar off --no-deps --force-reinstall "$DEST"/llama_cpp_python-*.whl
