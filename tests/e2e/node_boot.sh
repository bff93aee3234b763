#!/usr/bin/env bash
# Boots one end-to-end cluster node the way the container starts: run as
#   ip netns exec <netns> unshare --mount --uts --propagation private -- \
#     bash node_boot.sh <manifest> <scratch dir> <hostname> <workdir> <entrypoint…>
# so every mount below exists only in this node's new mount namespace.
#
# The node's root file system is an overlay of the host's root with a tmpfs
# upper layer: the image's files and the job's volumes can be mounted at their
# real paths (/etc/litefs.yml, /app/navidrome, /data, …) without creating
# anything on the host, and whatever the node writes outside its volumes is
# thrown away with the namespace, like a container's writable layer.
#
# Manifest lines (tab-separated), applied in order:
#   dir  <path>                 create an (empty) directory in the node's root
#   bind <host path> <path>     bind-mount a host file or directory there
#   ro   <host path> <path>     the same, read-only
set -euo pipefail

manifest=$1 scratch=$2 uts=$3 wd=$4
shift 4

mount -t tmpfs -o mode=0755 ndlse2e-root "$scratch"
mkdir "$scratch/upper" "$scratch/work" "$scratch/root"
root=$scratch/root
mount -t overlay ndlse2e-overlay \
  -o "lowerdir=/,upperdir=$scratch/upper,workdir=$scratch/work" "$root"
# The overlay holds only the root file system: the kernel's file systems are
# brought back from this namespace (ip netns exec mounted this netns's /sys).
for fs in dev proc sys; do
  mount --rbind "/$fs" "$root/$fs"
done

while IFS=$'\t' read -r kind src dst; do
  case "$kind" in
    dir) mkdir -p "$root$src" ;;
    bind | ro)
      if [ -d "$src" ]; then
        mkdir -p "$root$dst"
      else
        mkdir -p "$(dirname "$root$dst")"
        [ -e "$root$dst" ] || : >"$root$dst"
      fi
      mount --bind "$src" "$root$dst"
      if [ "$kind" = ro ]; then mount -o remount,bind,ro "$root$dst"; fi
      ;;
    *) echo "node_boot: bad manifest line: $kind $src $dst" >&2; exit 2 ;;
  esac
done <"$manifest"

hostname "$uts"
# exec all the way down, so the process the test spawned *is* the entrypoint
# (LiteFS) and receives the test's signals directly, as under the container's init.
exec chroot "$root" /bin/sh -c 'cd "$1" && shift && exec "$@"' node_boot "$wd" "$@"
