#!/usr/bin/env bash
# Out-of-tree plugins against the installed SDK: installs the build into a temporary prefix, scaffolds one
# plugin of each kind with `galvani new-plugin`, builds each with plain CMake and runs its own test, builds
# docs/sdk.md's example method, then runs a comparison with the installed host that uses them all.
#   out_of_tree_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
galvani=$prefix/bin/galvani
jobs=${GALVANI_JOBS:-2}

for kind in method evaluator path backend; do
  said=$("$galvani" new-plugin "oot-$kind" --kind "$kind" --dir "$tmp")
  # The installed host names its own prefix in the build command it prints.
  if ! grep -qF -- "-DCMAKE_PREFIX_PATH=$prefix" <<<"$said"; then
    echo "new-plugin did not print the install prefix $prefix:" >&2
    echo "$said" >&2
    exit 1
  fi
  cmake -S "$tmp/oot-$kind" -B "$tmp/oot-$kind/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
  cmake --build "$tmp/oot-$kind/build" -j "$jobs" >/dev/null
  ctest --test-dir "$tmp/oot-$kind/build" --output-on-failure >/dev/null
  echo "scaffold $kind: built and its test passed"
done
# A second scaffold with a taken name is refused, the first is left as it was.
if "$galvani" new-plugin oot-method --kind method --dir "$tmp" 2>/dev/null; then
  echo "new-plugin overwrote an existing folder" >&2
  exit 1
fi

cmake -S "$src/docs/examples/plugins/smoothgrad-gxa" -B "$tmp/smoothgrad" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/smoothgrad" -j "$jobs" >/dev/null
echo "docs example built"

cat > "$tmp/compare.toml" <<TOML
plugin_paths = ["oot-method/build", "oot-path/build", "oot-evaluator/build", "smoothgrad"]
[model]
path = "$src/docs/examples/fashion_cnn.pt"
[data]
inputs = "$src/docs/examples/fashion_test.pt"
limit = 8
[[methods]]
plugin = "oot-method"
layers = ["features.4"]
steps = 16
[[methods]]
plugin = "smoothgrad-gxa"
layers = ["features.4"]
samples = 4
[[methods]]
plugin = "conductance"
name = "conductance-quadratic-path"
layers = ["features.4"]
path = "oot-path"
steps = 16
[[methods]]
plugin = "nig"
layers = ["features.4"]
steps = 16
[[evaluators]]
plugin = "oot-evaluator"
TOML
"$galvani" run "$tmp/compare.toml" --out "$tmp/out" --quiet
for name in oot-method smoothgrad-gxa conductance-quadratic-path nig; do
  test -f "$tmp/out/attributions/$name/features.4.pt" || { echo "no attributions from $name" >&2; exit 1; }
done
grep -q '"mean_relative_error"' "$tmp/out/summary.json" || { echo "the evaluator's metrics are missing" >&2; exit 1; }
test -f "$tmp/out/tables/oot-evaluator/completeness.csv"
echo "comparison with out-of-tree method, path and evaluator: ok"

GALVANI_PLUGIN_PATH="$tmp/oot-backend/build" "$galvani" layers "$src/docs/examples/fashion_cnn.pt" \
  --backend oot-backend --input-shape 1,28,28 | grep -q "classifier"
echo "out-of-tree backend lists the model's layers: ok"

# The installed Python package (when the build has one): imported from the prefix with the build tree out of the
# way, it finds its engine's libraries and the installed plugins, and the out-of-tree method on GALVANI_PLUGIN_PATH.
if [ -f "$build/python/galvani/__init__.py" ]; then
  site=$(find "$prefix" -path '*-packages/galvani/__init__.py' | head -n 1)
  test -n "$site" || { echo "cmake --install put no galvani Python package under $prefix" >&2; exit 1; }
  (cd "$tmp" && GALVANI_PLUGIN_PATH="$tmp/oot-method/build" PYTHONPATH=$(dirname "$(dirname "$site")") /usr/bin/python3 -c "
import sys, torch, galvani
assert galvani.__file__.startswith('$prefix'), galvani.__file__
plugins = galvani.plugins()
assert all(p['loaded'] for p in plugins), [p for p in plugins if not p['loaded']]
assert any(p['file'].startswith('$prefix') for p in plugins), [p['file'] for p in plugins]
assert 'oot-method' in galvani.methods(), galvani.methods()
x = torch.load('$src/docs/examples/fashion_test.pt')[:4]
r = galvani.Session('$src/docs/examples/fashion_cnn.pt').attribute('nig', x, layers=['features.4'], progress=False)
assert r['features.4'].values.shape == (4, 32, 14, 14)
") || { echo "the installed Python package does not work" >&2; exit 1; }
  echo "installed Python package imports and runs from the prefix: ok"
fi
echo "1 passed, 0 failed"
