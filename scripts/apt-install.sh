#!/usr/bin/env bash
# Installs Debian packages (apt, with sudo when not root). Usage: ./scripts/apt-install.sh PKG...
set -euo pipefail
[ $# -gt 0 ] || exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing $* (apt)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
