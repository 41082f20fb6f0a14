#!/usr/bin/env bash
# Install what `make images` / `make images-test` need on a Debian 12 host: podman + buildah (rootful),
# runc, debootstrap for the local base, and the helpers podman uses. Idempotent and quick when done.
set -euo pipefail
packages=(buildah podman debootstrap runc fuse-overlayfs slirp4netns uidmap)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
podman --version
