#!/usr/bin/env bash
# mypy cannot follow setuptools' package-dir mapping, so give it the installed layout as a
# tree of symlinks (build/typing/hoptrace/...) and check the package from there.
set -euo pipefail
cd "$(dirname "$0")/.."
root=build/typing/hoptrace
rm -rf build/typing && mkdir -p "$root"
ln -s ../../../hoptrace/__init__.py "$root/__init__.py"
for part in instrumentation collector graph ui; do
  ln -s "../../../$part" "$root/$part"
done
py="${PYTHON:-python}"
"$py" -m mypy -p hoptrace
# The tests, benchmarks and examples import hoptrace through the same tree.
targets=()
for d in tests bench examples; do [ -d "$d" ] && targets+=("$d"); done
"$py" -m mypy "${targets[@]}"
