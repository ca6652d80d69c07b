#!/usr/bin/env bash
# Installs Mesa's lavapipe (a CPU Vulkan driver) so that Dawn finds a WebGPU adapter on a
# machine with no GPU. Debian bookworm's own Mesa (22.3) is too old for Dawn; bookworm-backports
# ships Mesa 25, which works. Does nothing when a WebGPU adapter is already found.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}

if [ -d "$root/node_modules/webgpu" ] && node "$here/probe-adapter.mjs" >/dev/null 2>&1; then
  echo "install-lavapipe: a WebGPU adapter is already available; nothing to do."
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
. /etc/os-release
suite="${VERSION_CODENAME:-bookworm}-backports"

# Reuse the mirror URI of the machine's own Debian source (the stanza or line that serves the
# release itself, not -security or -updates); hard-code no host.
codename=${VERSION_CODENAME:-bookworm}
uri=$(awk -v c="$codename" '
  /^URIs:/ { u=$2 } /^Suites:/ { for (i=2;i<=NF;i++) if ($i==c) s=1 }
  /^$/ { if (s && u) { print u; exit } u=""; s=0 }
  END { if (s && u) print u }' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
if [ -z "$uri" ]; then
  uri=$(awk -v c="$codename" '$1=="deb" && $3==c { print $2; exit }' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1)
fi
[ -n "$uri" ] || { echo "install-lavapipe: found no Debian source for $codename in /etc/apt to take a mirror from" >&2; exit 1; }

list=/etc/apt/sources.list.d/fogc-backports.list
if ! grep -qs "$suite" /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; then
  echo "deb $uri $suite main" | $sudo tee "$list" >/dev/null
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -t "$suite" mesa-vulkan-drivers libvulkan1 >/dev/null
echo "install-lavapipe: installed mesa-vulkan-drivers from $suite."
if [ -d "$root/node_modules/webgpu" ]; then node "$here/probe-adapter.mjs"; fi
