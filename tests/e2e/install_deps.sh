#!/usr/bin/env bash
# Prerequisites for the end-to-end tests (multi-node LiteFS cluster on one
# machine, one network + mount namespace per node).
#
# - installs missing Debian packages (fuse3 for fusermount3, iproute2 for
#   `ip netns`/veth, util-linux for unshare/nsenter, procps, curl, and a C
#   toolchain for Navidrome's cgo SQLite driver);
# - builds LiteFS and Navidrome from the Go module proxy into a cache dir
#   outside the repository (nothing of their source is vendored or kept);
# - prints the binary paths on stdout as shell assignments:
#       eval "$(tests/e2e/install_deps.sh)"
#   defines LITEFS, LITEFS_VERSION, NAVIDROME, NAVIDROME_VERSION, E2E_CACHE.
#
# Idempotent: does nothing but print the paths when everything is present.
# Progress goes to stderr.
#
# Environment:
#   E2E_CACHE              cache dir (default ${XDG_CACHE_HOME:-$HOME/.cache}/navidrome-litefs-e2e)
#   E2E_LITEFS_VERSION     default v0.5.14
#   E2E_NAVIDROME_VERSION  default v0.63.2 (newest v0.63.x the module proxy serves)
#   E2E_SKIP_APT=1         do not touch apt (fail later if something is missing)
# (Not NDLS_*: that prefix is the supervisor's, and doctor flags unknown names in it.)
set -euo pipefail

LITEFS_VERSION="${E2E_LITEFS_VERSION:-v0.5.14}"
NAVIDROME_VERSION="${E2E_NAVIDROME_VERSION:-v0.63.2}"
CACHE="${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/navidrome-litefs-e2e}"
BIN="$CACHE/bin"
LITEFS="$BIN/litefs"
NAVIDROME="$BIN/navidrome-$NAVIDROME_VERSION"

log() { printf 'install_deps: %s\n' "$*" >&2; }
die() { printf 'install_deps: ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- apt packages
# fuse3: fusermount3 (LiteFS mounts through it); iproute2: ip netns / veth;
# util-linux: unshare / nsenter; procps: ps / pgrep; curl: probes;
# gcc + libc6-dev: cgo (mattn/go-sqlite3 in Navidrome);
# ca-certificates: HTTPS to the Go module proxy.
APT_PACKAGES=(fuse3 iproute2 util-linux procps curl gcc libc6-dev ca-certificates)

pkg_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

ensure_apt_packages() {
  if [ "${E2E_SKIP_APT:-}" = 1 ]; then
    log "E2E_SKIP_APT=1: not checking apt packages"
    return
  fi
  if ! command -v dpkg-query >/dev/null 2>&1; then
    log "no dpkg-query (not Debian?): not checking apt packages"
    return
  fi
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    pkg_installed "$p" || missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "apt packages present: ${APT_PACKAGES[*]}"
    return
  fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo; install: ${missing[*]}"
    sudo=(sudo)
  fi
  log "apt-get update (needed for: ${missing[*]})"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  log "apt-get install ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

ensure_apt_packages

command -v go >/dev/null 2>&1 || die "go is not installed (needed to build LiteFS and Navidrome)"
[ -e /dev/fuse ] || log "WARNING: /dev/fuse does not exist; LiteFS cannot mount here"

mkdir -p "$BIN"

# --------------------------------------------------------------------- LiteFS
# The tag's go.mod has no active replace directive, so `go install` works.
# -X main.Version makes `litefs version` print the version instead of
# "LiteFS development build" (the proxy's .info has no commit hash for it).
if [ -x "$LITEFS" ]; then
  log "litefs present: $LITEFS"
else
  log "building LiteFS $LITEFS_VERSION into $BIN (go install)"
  start=$SECONDS
  GOBIN="$BIN" go install \
    -ldflags "-X main.Version=$LITEFS_VERSION -X main.Commit=unknown" \
    "github.com/superfly/litefs/cmd/litefs@$LITEFS_VERSION" >&2
  [ -x "$LITEFS" ] || die "go install finished but $LITEFS is missing"
  log "built $LITEFS in $((SECONDS - start))s"
fi

# ------------------------------------------------------------------ Navidrome
# `go install` refuses the module (its go.mod has a replace directive), so:
# download the module zip from the proxy, copy the extracted (read-only) dir to
# a temporary build dir, and build there. The web UI is not built (ui/build
# holds only .gitkeep): the UI is empty but /ping and the API work.
build_navidrome() {
  local tmp json dir sha start
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/ndls-navidrome-build.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  log "downloading github.com/navidrome/navidrome@$NAVIDROME_VERSION (go mod download)"
  # Run outside any module so the repository's go.mod (if any) plays no part.
  json="$(cd "$tmp" && GOWORK=off go mod download -json \
    "github.com/navidrome/navidrome@$NAVIDROME_VERSION")" \
    || die "go mod download failed: $json"
  dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -n1)"
  sha="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Hash": "\([0-9a-f]*\)",\{0,1\}$/\1/p' | head -n1)"
  [ -n "$dir" ] && [ -d "$dir" ] || die "cannot find the downloaded module dir in: $json"
  log "module dir $dir (commit ${sha:-unknown})"
  cp -R "$dir" "$tmp/src"
  chmod -R u+w "$tmp/src"
  log "building Navidrome $NAVIDROME_VERSION (CGO_ENABLED=1 go build -tags netgo,sqlite_fts5); takes minutes"
  start=$SECONDS
  (cd "$tmp/src" && CGO_ENABLED=1 go build -tags netgo,sqlite_fts5 \
    -ldflags "-X github.com/navidrome/navidrome/consts.gitTag=$NAVIDROME_VERSION -X github.com/navidrome/navidrome/consts.gitSha=${sha:0:8}" \
    -o "$NAVIDROME.tmp" .) >&2
  mv -f "$NAVIDROME.tmp" "$NAVIDROME"
  log "built $NAVIDROME in $((SECONDS - start))s"
  rm -rf "$tmp"
  trap - EXIT
}

if [ -x "$NAVIDROME" ]; then
  log "navidrome present: $NAVIDROME"
else
  build_navidrome
fi

# --------------------------------------------------------------------- output
printf 'E2E_CACHE=%q\n' "$CACHE"
printf 'LITEFS=%q\n' "$LITEFS"
printf 'LITEFS_VERSION=%q\n' "$LITEFS_VERSION"
printf 'NAVIDROME=%q\n' "$NAVIDROME"
printf 'NAVIDROME_VERSION=%q\n' "$NAVIDROME_VERSION"
