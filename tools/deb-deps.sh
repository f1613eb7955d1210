#!/bin/sh
# Install the Debian peers the tests talk to (xenstore clients, Xen's own
# test-xenstore and verify-stream-v2, the public headers for the ABI probe).
# As root: apt-get them. Otherwise: print the exact command and fail.
set -eu
PKGS="xenstore-utils python3-pyxs xen-utils-4.17 libxen-dev"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "deb-deps: installing$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
else
  echo "deb-deps: missing Debian packages:$missing" >&2
  echo "deb-deps: run as root:  apt-get update && apt-get install -y$missing" >&2
  exit 1
fi
