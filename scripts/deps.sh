#!/usr/bin/env bash
# Installs what building and testing Skiff needs on Debian 12, as root.
# Idempotent: packages already present are not fetched again.
set -euo pipefail

packages=(
  build-essential      # C compiler for the bundled SQLite
  protobuf-compiler libprotobuf-dev # gRPC code generation, etcd-client's and CSI's (protoc and google/protobuf/*.proto)
  e2fsprogs xfsprogs mount # local-disk volumes: mkfs, online growth, losetup
  glusterfs-server glusterfs-client # cross-node volumes: the FUSE client mounts, the server their test serves
  etcd-server          # the etcd backend's tests and benchmark
  etcd-client          # etcdctl: `skiff bench store`'s reference figure, `skiff etcd-snapshot restore`, the HA tests
  curl ca-certificates # curl: the unauthenticated-request test
  python3 python3-venv # the Python client tests
  openssl              # certificate signing requests in the kubectl tests
  runc                 # the node agent's OCI runtime
  containernetworking-plugins # CNI: bridge, host-local, loopback for pods
  busybox-static umoci skopeo # the test images, built from busybox
  docker-registry      # the local registry the node tests pull from
  nftables conntrack   # the node network: NAT, the service proxy, stale UDP flows
  bird2                # the bgp backend, and the outside router its test peers with
  dnsperf              # skiff bench dns
  prometheus           # the monitoring tests' Prometheus; promtool lints the metrics and tests the alerts
  prometheus-alertmanager prometheus-pushgateway # where the monitoring tests' alerts go, and pushed metrics come from
  iproute2             # the multi-host tests' namespaces, bridge and veths
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# kubectl 1.32 is the judge of API compatibility. This machine kind carries
# it as the `kubectl` apt package; elsewhere install kubectl 1.32 first.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "deps: installing kubectl"
  apt-get install -y -qq kubectl >/dev/null || { echo "deps: kubectl 1.32 is needed and no apt source offers it" >&2; exit 1; }
fi

# Debian's etcd package starts a system etcd; Skiff's tests run their own on
# loopback with private ports and data, so it is neither needed nor in the way.

if ! command -v cargo >/dev/null 2>&1; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
  # Debian 12's rustc is too old for the dependencies; use rustup.
  echo "deps: installing the Rust toolchain with rustup"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
fi
