#!/usr/bin/env bash
# Installs polyak into a temporary prefix and builds a consumer through find_package(polyak),
# then builds the same consumer with polyak as a subdirectory; both must run and pass.
#   check_package.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1
build=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$src/tests/package/consumer" -B "$work/installed" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/installed" -j 2 >/dev/null
"$work/installed/consumer"
echo "find_package(polyak): ok"
cmake -S "$src/tests/package/consumer" -B "$work/sub" -DPOLYAK_CONSUMER_MODE=add_subdirectory \
  -DPOLYAK_SOURCE_DIR="$src" -DCMAKE_BUILD_TYPE=Release -DPOLYAK_WERROR=ON >/dev/null
cmake --build "$work/sub" --target consumer -j 2 >/dev/null
"$work/sub/consumer"
echo "add_subdirectory(polyak): ok"
