#!/usr/bin/env bash
# The local registry the node tests pull from: Debian's docker-registry on
# 127.0.0.1:5000 (SKIFF_TEST_REGISTRY_PORT), holding `busybox:test`, an
# image built here from busybox-static with umoci and pushed with skopeo.
# Nothing comes from the internet. Idempotent, and safe to run from
# several tests at once (a lock serialises them).
set -euo pipefail
port=${SKIFF_TEST_REGISTRY_PORT:-5000}
root=${SKIFF_TEST_REGISTRY_DIR:-/var/lib/skiff-test-registry}
mkdir -p "$root"
exec 9>"$root/.lock"
flock 9

up() { curl -sf "http://127.0.0.1:$port/v2/" >/dev/null; }
if ! up; then
  cat >"$root/config.yml" <<CONFIG
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $root/data}
  delete: {enabled: true}
http: {addr: "127.0.0.1:$port"}
CONFIG
  setsid docker-registry serve "$root/config.yml" >"$root/registry.log" 2>&1 </dev/null 9>&- &
  for _ in $(seq 100); do up && break; sleep 0.1; done
  up || { cat "$root/registry.log" >&2; echo "the test registry did not start" >&2; exit 1; }
fi

manifest() { curl -sf -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://127.0.0.1:$port/v2/$1/manifests/$2"; }
if ! manifest busybox test; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  umoci init --layout "$work/oci"
  umoci new --image "$work/oci:busybox"
  umoci unpack --image "$work/oci:busybox" "$work/bundle" >/dev/null
  rootfs="$work/bundle/rootfs"
  mkdir -p "$rootfs"/{bin,etc,tmp,root,var/www,proc,sys,dev}
  cp /usr/bin/busybox "$rootfs/bin/busybox"
  for applet in $(/usr/bin/busybox --list); do
    [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
  done
  chmod 1777 "$rootfs/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
  echo 'hello from skiff' >"$rootfs/var/www/index.html"
  umoci repack --image "$work/oci:busybox" "$work/bundle"
  umoci config --image "$work/oci:busybox" --config.cmd sh --config.env PATH=/bin --config.workingdir /
  skopeo copy -q --dest-tls-verify=false "oci:$work/oci:busybox" "docker://127.0.0.1:$port/busybox:test"
fi
echo "127.0.0.1:$port/busybox:test"
