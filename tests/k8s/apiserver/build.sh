#!/usr/bin/env bash
# Build a real kube-apiserver for the tests (tests/k8s/apiserver/fixture.py) and cache it.
#
#   tests/k8s/apiserver/build.sh          # cold: 5-11 min on 2 cores (measured); cached: 0.2 s
#
# Debian 12 packages Kubernetes 1.20 as source only, so this builds kube-apiserver from Debian's
# `kubernetes` source package, offline, with Debian's Go (1.19), and uses Debian's etcd-server:
#   1. apt-get install etcd-server golang-go rsync jq dpkg-dev golang-github-modern-go-reflect2-dev
#      (enabling deb-src entries for the configured Debian mirror if none exist);
#   2. apt-get source kubernetes=<tests/k8s/apiserver/DEBIAN_VERSION> into ~/.cache/medgo/kube/build;
#   3. two fixes for building 1.20's vendored code with Go 1.19:
#      - replace vendor/github.com/modern-go/reflect2 with Debian's reflect2 1.0.2 (the vendored 1.0.1
#        crashes the server under Go 1.19);
#      - in the vendored OpenAPI type validators (kube-openapi and go-openapi validate/type.go), test
#        for JSON null with `data == nil`: their `reflect.DeepEqual(reflect.Zero(T), reflect.ValueOf(v))`
#        is true for every runtime "" under Go 1.19 (both point at the runtime's shared zero value), so
#        the server would refuse any custom resource or CRD default holding an empty string;
#   4. CGO_ENABLED=0 make WHAT=cmd/kube-apiserver in a GOPATH layout, as Debian's rules do;
#   5. copy the binary to ~/.cache/medgo/kube/<version>/kube-apiserver, write the etcd path to
#      .../etcd-path and the recipe number to .../recipe, remove the source and build trees.
# Re-running is safe: with the binary of this recipe cached (and etcd installed) it only checks and exits.
# Needs root or sudo for apt-get. Environment: MEDGO_KUBE_CACHE (default ~/.cache/medgo/kube),
# MEDGO_KUBE_DEBIAN_VERSION (default: DEBIAN_VERSION in build.env next to this script).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=build.env
. "$here/build.env"
version="${MEDGO_KUBE_DEBIAN_VERSION:-$DEBIAN_VERSION}"
cache_root="${MEDGO_KUBE_CACHE:-$HOME/.cache/medgo/kube}"
out="$cache_root/$version"
build_root="$cache_root/build"
started=$SECONDS

say() { echo "[kube-apiserver build] $*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_get() { as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"; }

binary_ok() {
  [ -x "$out/kube-apiserver" ] && [ "$(cat "$out/recipe" 2>/dev/null)" = "$RECIPE" ] \
    && "$out/kube-apiserver" --version >/dev/null 2>&1
}
cached_ok() {
  binary_ok && [ -s "$out/etcd-path" ] && [ -x "$(cat "$out/etcd-path")" ]
}

if cached_ok; then
  say "cached: $out/kube-apiserver ($("$out/kube-apiserver" --version)), etcd $(cat "$out/etcd-path")"
  exit 0
fi

packages=(etcd-server golang-go rsync jq dpkg-dev golang-github-modern-go-reflect2-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

enable_deb_src() {
  if grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    return 1
  fi
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    say "enabling deb-src: /etc/apt/sources.list.d/medgo-deb-src.sources (copy of debian.sources)"
    sed 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
      | as_root tee /etc/apt/sources.list.d/medgo-deb-src.sources >/dev/null
  elif grep -qsE '^deb ' /etc/apt/sources.list; then
    say "enabling deb-src: /etc/apt/sources.list.d/medgo-deb-src.list (from sources.list)"
    grep -E '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' \
      | as_root tee /etc/apt/sources.list.d/medgo-deb-src.list >/dev/null
  else
    say "error: no Debian apt sources found to derive deb-src entries from" >&2
    exit 1
  fi
}

need_update=0
enable_deb_src && need_update=1
[ ${#missing[@]} -gt 0 ] && need_update=1
apt-cache showsrc kubernetes 2>/dev/null | grep -qxF "Version: $version" || need_update=1
if [ $need_update = 1 ]; then
  say "apt-get update"
  apt_get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  say "installing: ${missing[*]}"
  apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
etcd_bin="$(command -v etcd || true)"
[ -x "$etcd_bin" ] || { say "error: etcd-server installed but no etcd on PATH" >&2; exit 1; }

if binary_ok; then
  say "binary already cached; recording etcd path"
else
  mkdir -p "$build_root"
  cd "$build_root"
  src="$(find . -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)"
  if [ -z "$src" ] || [ ! -f "$src/.medgo-source-complete" ]; then
    rm -rf ./kubernetes-* ./kubernetes_*
    say "apt-get source kubernetes=$version (into $build_root)"
    apt-get -qq source "kubernetes=$version" >/dev/null
    src="$(find . -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)"
    touch "$src/.medgo-source-complete"
    rm -f ./kubernetes_*  # the tarballs; the unpacked tree is all the build needs
  fi
  src="$(cd "$src" && pwd)"

  reflect2_pkg=/usr/share/gocode/src/github.com/modern-go/reflect2
  say "vendor: replacing modern-go/reflect2 with Debian's $(dpkg-query -W -f='${Version}' golang-github-modern-go-reflect2-dev)"
  rm -rf "$src/vendor/github.com/modern-go/reflect2"
  cp -r "$reflect2_pkg" "$src/vendor/github.com/modern-go/reflect2"
  rm -f "$src/vendor/github.com/modern-go/reflect2/go.mod" "$src/vendor/github.com/modern-go/reflect2/go.sum"
  for f in vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go vendor/github.com/go-openapi/validate/type.go; do
    [ -f "$src/$f" ] || continue
    say "vendor: $f: JSON null is data == nil (Go 1.19 makes reflect.Zero(string) DeepEqual every \"\")"
    sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' "$src/$f"
    grep -q 'reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data))' "$src/$f" \
      && { say "error: could not patch $f" >&2; exit 1; }
  done

  upstream="${version#*really}"; upstream="${upstream%%-*}"
  mkdir -p "$build_root/.go/src/k8s.io"
  ln -sfn "$src" "$build_root/.go/src/k8s.io/kubernetes"
  say "go $(go env GOVERSION): CGO_ENABLED=0 make WHAT=cmd/kube-apiserver (v$upstream; 5-11 min on 2 cores)"
  (
    cd "$build_root/.go/src/k8s.io/kubernetes"
    export GOPATH="$build_root/.go" GOCACHE="$build_root/.gocache" GOPROXY=off GOFLAGS=-mod=vendor
    export CGO_ENABLED=0 KUBE_GIT_VERSION="v$upstream" KUBE_GIT_MAJOR="${upstream%%.*}"
    export KUBE_GIT_MINOR="$(echo "$upstream" | cut -d. -f2)" KUBE_GIT_TREE_STATE=clean
    make WHAT=cmd/kube-apiserver
  )
  bin="$(find "$src/_output" -type f -name kube-apiserver -perm -u+x | head -n1)"
  [ -n "$bin" ] || { say "error: build finished but no kube-apiserver under $src/_output" >&2; exit 1; }
  mkdir -p "$out"
  cp "$bin" "$out/kube-apiserver.tmp" && mv "$out/kube-apiserver.tmp" "$out/kube-apiserver"
  echo "$RECIPE" >"$out/recipe"
  say "cleaning up $build_root"
  chmod -R u+w "$build_root" 2>/dev/null || true
  rm -rf "$build_root"
fi
echo "$etcd_bin" >"$out/etcd-path"
cached_ok || { say "error: $out/kube-apiserver does not run" >&2; exit 1; }
say "done in $((SECONDS - started))s (recipe $RECIPE): $out/kube-apiserver ($("$out/kube-apiserver" --version)), etcd $etcd_bin"
