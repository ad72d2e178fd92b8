#!/usr/bin/env bash
# Sets polyak up on a Debian 12 machine: installs the Debian packages it needs (only those
# missing, so a second run is quick), configures the `release` preset and builds it.
#   scripts/setup.sh            packages + configure + build
#   POLYAK_PRESET=debug scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# python3-matplotlib draws the PNGs of `polyak compare` and `polyak ablate` (scripts/plot_runs.py);
# dataset-fashion-mnist holds Fashion-MNIST (the pixel and image tasks); dict-devil, Bierce's
# public-domain "The Devil's Dictionary", is the default text of the byte-level task.
packages=(build-essential cmake ccache libeigen3-dev doctest-dev nlohmann-json3-dev libcli11-dev
          zlib1g-dev libstb-dev python3-matplotlib dataset-fashion-mnist dict-devil)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

preset=${POLYAK_PRESET:-release}
jobs=${POLYAK_JOBS:-$(nproc)}
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$jobs"
echo "setup: built build/$preset"
