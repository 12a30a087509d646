#!/usr/bin/env bash
# Debian packages the GUI needs at run and test time: the X11 libraries winit loads and
# Mesa's software renderers, so wgpu draws (and the snapshot tests render) without a GPU.
# Installs only what is missing, says what and why before it does, and stops with the
# command to run when it cannot install. Idempotent.
set -euo pipefail
pkgs="libegl1 libegl-mesa0 libgl1-mesa-dri mesa-vulkan-drivers libxkbcommon-x11-0 libxcursor1 libxi6 libxrandr2"
missing=""
for p in $pkgs; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
missing="${missing# }"
cmd="apt-get update && apt-get install -y $missing"
cannot() {
  echo "prunescope: cannot install the GUI's system packages ($1)." >&2
  echo "prunescope: install them yourself, then run this again:" >&2
  echo "    sudo sh -c '$cmd'" >&2
  echo "prunescope: (a headless build for servers needs none of them: cargo build --release --no-default-features)" >&2
  exit 1
}
command -v apt-get >/dev/null 2>&1 || cannot "this system has no apt-get"
echo "prunescope: the explorer and its UI tests need these Debian packages, which are missing:" >&2
echo "prunescope:   $missing" >&2
echo "prunescope: (X11 libraries for the window, Mesa's software OpenGL/Vulkan renderers so it draws without a GPU)" >&2
if [ "$(id -u)" = 0 ]; then
  run=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  run=(sudo)
else
  cannot "not root, and sudo needs a password or is not installed"
fi
echo "prunescope: installing them with: ${run[*]:+${run[*]} }apt-get install $missing" >&2
"${run[@]}" apt-get update -qq || cannot "apt-get update failed"
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive "${run[@]}" apt-get install -y -qq $missing >/dev/null || cannot "apt-get install failed"
