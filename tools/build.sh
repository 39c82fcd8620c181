#!/usr/bin/env bash
# Build the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kubectl) and helm from the pinned wrapper modules in tools/, into a per-version
# cache outside the checkout. A component is built only when its cached binary
# for the pinned version is missing, so a fresh clone on a machine that built
# once before starts in seconds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${NASSYNC_CACHE:-$HOME/.cache/nassync}"
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0

pinned() { # module go.mod -> version that the wrapper requires
  awk -v m="$1" '$1=="require" {$1=""; sub(/^ /, "")} $1==m && $2 ~ /^v/ {print $2; exit}' "$2"
}

k8s_version="$(pinned k8s.io/kubernetes "$here/k8s/go.mod")"
[[ -n "$k8s_version" ]] || { echo "cannot read the pinned k8s.io/kubernetes version" >&2; exit 1; }
etcd_version="$(pinned go.etcd.io/etcd/server/v3 "$here/etcd/go.mod")"
helm_version="$(pinned helm.sh/helm/v3 "$here/helm/go.mod")"

bin_dir() { echo "$cache/bin/$1-$2"; }

build_k8s() {
  local out; out="$(bin_dir kubernetes "$k8s_version")"
  if [[ -x "$out/kube-apiserver" && -x "$out/kube-controller-manager" && -x "$out/kubectl" && -x "$out/kubelet" ]]; then
    return
  fi
  local minor; minor="$(echo "$k8s_version" | cut -d. -f2)"
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  echo ">> building kubernetes $k8s_version into $out (first time: 10-20 min on 2 cores)" >&2
  mkdir -p "$out.tmp"
  (cd "$here/k8s" && go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ld" -o "$out.tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kubelet)
  rm -rf "$out"; mv "$out.tmp" "$out"
}

build_etcd() {
  local out; out="$(bin_dir etcd "$etcd_version")"
  [[ -x "$out/etcd" ]] && return
  echo ">> building etcd $etcd_version into $out" >&2
  mkdir -p "$out.tmp"
  (cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3)
  rm -rf "$out"; mv "$out.tmp" "$out"
}

build_helm() {
  local out; out="$(bin_dir helm "$helm_version")"
  [[ -x "$out/helm" ]] && return
  local minor; minor="$(echo "$k8s_version" | cut -d. -f2)"
  echo ">> building helm $helm_version into $out" >&2
  mkdir -p "$out.tmp"
  (cd "$here/helm" && go build -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
    -o "$out.tmp/helm" helm.sh/helm/v3/cmd/helm)
  rm -rf "$out"; mv "$out.tmp" "$out"
}

case "${1:-all}" in
  paths)
    echo "ETCD=$(bin_dir etcd "$etcd_version")/etcd"
    echo "KUBE_BIN=$(bin_dir kubernetes "$k8s_version")"
    echo "HELM_BIN=$(bin_dir helm "$helm_version")"
    ;;
  all) build_etcd; build_helm; build_k8s ;;
  *) echo "usage: $0 [all|paths]" >&2; exit 2 ;;
esac
