#!/usr/bin/env bash
# Brings up a single-node Skiff cluster on this machine (Debian 12, as root):
# installs what it needs, builds Skiff and starts `skiff server`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --locked -p skiff
install -m 0755 target/release/skiff /usr/local/bin/skiff
if ! skiff server --help >/dev/null 2>&1; then
  echo "skiff is built and installed at /usr/local/bin/skiff."
  echo "The API server has not landed yet, so there is no cluster to start; see README.md."
  exit 0
fi
exec skiff server "$@"
