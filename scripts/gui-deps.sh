#!/usr/bin/env bash
# Debian packages the GUI needs at run and test time: the X11 libraries winit loads and
# Mesa's software renderers, so wgpu draws (and the snapshot tests render) without a GPU.
# Installs only what is missing; idempotent.
set -euo pipefail
pkgs="libegl1 libegl-mesa0 libgl1-mesa-dri mesa-vulkan-drivers libxkbcommon-x11-0 libxcursor1 libxi6 libxrandr2"
missing=""
for p in $pkgs; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "prunescope: installing Debian packages for the GUI:$missing" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
fi
