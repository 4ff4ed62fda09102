#!/usr/bin/env bash
# make contracts: makes Cloud Hypervisor's OpenAPI description available to the chv tests.
# Order (the same as chv/internal/fakechv/locate.go): $VOIDBOX_CHV_OPENAPI, then
# ../shared/contracts next to the repository, then the cache, downloaded from GitHub at the
# pinned commit when missing. Every file is checked against the pinned sha256; a bad
# download is deleted. $VOIDBOX_CHV_OPENAPI_URL replaces the download URL (a mirror).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pin="$root/chv/internal/fakechv/openapi.pin"

pinned() {
  local v
  v=$(sed -n "s/^$1=//p" "$pin")
  if [ -z "$v" ]; then
    echo "contracts: $pin has no $1= line" >&2
    exit 1
  fi
  printf '%s' "$v"
}
commit=$(pinned CHV_OPENAPI_COMMIT)
path=$(pinned CHV_OPENAPI_PATH)
want=$(pinned CHV_OPENAPI_SHA256)
what="cloud-hypervisor's $path at commit $commit (sha256 $want)"

# matches FILE: true when FILE has the pinned sha256; otherwise says what differs.
matches() {
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  [ "$got" = "$want" ] && return 0
  echo "contracts: $1 has sha256 $got, want $want" >&2
  return 1
}

if [ -n "${VOIDBOX_CHV_OPENAPI:-}" ]; then
  f=$VOIDBOX_CHV_OPENAPI
  if [ ! -f "$f" ]; then
    echo "contracts: VOIDBOX_CHV_OPENAPI=$f: no such file; point it at a copy of $what" >&2
    exit 1
  fi
  matches "$f" || { echo "contracts: point VOIDBOX_CHV_OPENAPI at a copy of $what" >&2; exit 1; }
  echo "contracts: using $f (VOIDBOX_CHV_OPENAPI)"
  exit 0
fi

# ../shared next to the clone, or a shared/ in any directory further up (a clone may sit
# deeper than the project's own checkout).
shared="$(dirname "$root")/shared/contracts/cloud-hypervisor-openapi.yaml"
dir=$(dirname "$root")
while :; do
  cand="$dir/shared/contracts/cloud-hypervisor-openapi.yaml"
  if [ -f "$cand" ]; then
    matches "$cand" || { echo "contracts: replace $cand with $what" >&2; exit 1; }
    echo "contracts: using $cand"
    exit 0
  fi
  [ "$dir" = / ] && break
  dir=$(dirname "$dir")
done

case "${XDG_CACHE_HOME:-}" in
  /*) cache_base=$XDG_CACHE_HOME ;;
  *) cache_base="$HOME/.cache" ;;
esac
dir="$cache_base/voidbox/contracts"
cache="$dir/cloud-hypervisor-openapi-$commit.yaml"
if [ -f "$cache" ]; then
  if matches "$cache"; then
    echo "contracts: using $cache"
    exit 0
  fi
  echo "contracts: deleting $cache and fetching it again" >&2
  rm -f "$cache"
fi

url=${VOIDBOX_CHV_OPENAPI_URL:-https://raw.githubusercontent.com/cloud-hypervisor/cloud-hypervisor/$commit/$path}
help="download $url by hand and set VOIDBOX_CHV_OPENAPI to it, or place it at $shared"
if ! command -v curl >/dev/null; then
  echo "contracts: curl not found (apt-get install curl); or $help" >&2
  exit 1
fi
mkdir -p "$dir"
tmp=$(mktemp "$dir/.download.XXXXXX")
trap 'rm -f "$tmp"' EXIT
echo "contracts: fetching $url"
if ! curl -fsSL --retry 2 --connect-timeout 20 --max-time 120 -o "$tmp" "$url"; then
  echo "contracts: download failed; $help" >&2
  exit 1
fi
if ! matches "$tmp"; then
  echo "contracts: $url is not $what; nothing was cached. Check the URL, or $help" >&2
  exit 1
fi
chmod 644 "$tmp"
mv "$tmp" "$cache"
echo "contracts: fetched to $cache"
