#!/usr/bin/env bash
# mypy cannot follow setuptools' package-dir mapping, so give it the installed layout as a
# tree of hard links (.mypy-tree/hoptrace/...; mypy does not walk symlinked folders) and
# check the package from there. Errors name .mypy-tree/hoptrace/<part>/<file>.
set -euo pipefail
cd "$(dirname "$0")/.."
root=.mypy-tree/hoptrace
rm -rf .mypy-tree && mkdir -p "$root"
ln hoptrace/__init__.py "$root/__init__.py"
for part in instrumentation collector graph ui demo; do
  mkdir -p "$root/$part"
  (cd "$part" && find . -name '*.py' -o -name 'py.typed') | while read -r f; do
    mkdir -p "$root/$part/$(dirname "$f")"
    ln "$part/$f" "$root/$part/$f"
  done
done
py="${PYTHON:-python}"
"$py" -m mypy -p hoptrace
# The tests, benchmarks and examples import hoptrace through the same tree.
targets=()
for d in tests bench examples; do [ -d "$d" ] && targets+=("$d"); done
"$py" -m mypy "${targets[@]}"
