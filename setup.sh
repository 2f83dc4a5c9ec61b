#!/usr/bin/env bash
# Galvani set-up: installs what is missing (Debian packages), builds, then runs the demo or the tests.
#   ./setup.sh demo   install, build, run the default comparison on the bundled examples (image, text)
#   ./setup.sh test   install, build, run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"

mode=${1:-demo}
case "$mode" in demo|test|build) ;; *) echo "usage: $0 demo|test|build" >&2; exit 2 ;; esac

packages=(cmake ninja-build g++ ccache pkg-config
  libtorch-dev libboost-dev libtomlplusplus-dev libtbb-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev zlib1g-dev libcairo2-dev fonts-dejavu-core
  python3-torch python3-torchvision dataset-fashion-mnist
  pybind11-dev python3-dev python3-pytest python3-tqdm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
  if [[ $(id -u) -eq 0 ]]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    echo "missing Debian packages; run as root:" >&2
    echo "  $cmd" >&2
    exit 1
  fi
fi

jobs=${GALVANI_JOBS:-$(nproc)}
build=${GALVANI_BUILD_DIR:-build}
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/galvani-ccache}
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGALVANI_BENCHMARKS=ON -DGALVANI_TESTS=ON >/dev/null
cmake --build "$build" -j "$jobs"

case "$mode" in
  demo)
    "$build/host/galvani" run docs/examples/fashion.toml --out runs/fashion
    "$build/host/galvani" run docs/examples/sentiment.toml --out runs/sentiment
    echo "open runs/fashion/report.html and runs/sentiment/report.html (or report.md; every number is in"
    echo "summary.json) to read the comparisons"
    ;;
  test)
    ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 1500
    ;;
  build) ;;
esac
