#!/bin/bash
# The design this project replaces, written out literally as the reference for
# `deno task bench`: a shell loop that checks for <mount>/.primary once a
# second, starts or stops the app, and registers or deregisters it with curl.
# It is deliberately naive (file only, no LiteFS API, no process group, a
# foreground `sleep`), because that is what is being compared against.
# Not for production: an absent .primary does not prove primacy (FACTS.md).
#
# usage: baseline.sh -- command [args...]
# env:   BASELINE_MOUNT_DIR (/data), CONSUL_HTTP_ADDR (127.0.0.1:8500),
#        BASELINE_SERVICE_ID (navidrome-$HOSTNAME), BASELINE_SERVICE_PORT (4533),
#        BASELINE_POLL_SECONDS (1)
set -u

mount=${BASELINE_MOUNT_DIR:-/data}
consul=${CONSUL_HTTP_ADDR:-127.0.0.1:8500}
case $consul in http://* | https://*) ;; *) consul="http://$consul" ;; esac
id=${BASELINE_SERVICE_ID:-navidrome-${HOSTNAME:-$(hostname)}}
port=${BASELINE_SERVICE_PORT:-4533}
interval=${BASELINE_POLL_SECONDS:-1}
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || {
  echo "usage: baseline.sh -- command [args...]" >&2
  exit 78
}

# Each line starts with the epoch time in seconds (microsecond fraction), so
# the bench can time "first role observation" without a fork per line.
log() { printf '%s baseline: %s\n' "$EPOCHREALTIME" "$*" >&2; }

register() {
  curl -fsS -m 2 -X PUT -H 'Content-Type: application/json' \
    --data "{\"ID\":\"$id\",\"Name\":\"navidrome\",\"Tags\":[\"primary\"],\"Port\":$port,\"Check\":{\"HTTP\":\"http://127.0.0.1:$port/ping\",\"Interval\":\"10s\"}}" \
    "$consul/v1/agent/service/register" >/dev/null || log "register failed"
}

deregister() {
  curl -fsS -m 2 -X PUT "$consul/v1/agent/service/deregister/$id" >/dev/null ||
    log "deregister failed"
}

app=""
start_app() {
  "$@" &
  app=$!
  log "started app, pid $app"
}
stop_app() {
  kill -TERM "$app" 2>/dev/null
  wait "$app"
  log "stopped app, pid $app"
  app=""
}

shutdown() {
  log "signal: stopping"
  if [ -n "$app" ]; then
    deregister
    stop_app
  fi
  exit 0
}
trap shutdown TERM INT

role=""
while true; do
  if [ -e "$mount/.primary" ]; then now=replica; else now=primary; fi
  if [ "$now" != "$role" ]; then
    log "role ${role:-start} -> $now"
    role=$now
  fi
  if [ "$role" = primary ]; then
    if [ -z "$app" ] || ! kill -0 "$app" 2>/dev/null; then
      start_app "$@"
      register
    fi
  elif [ -n "$app" ]; then
    deregister
    stop_app
  fi
  sleep "$interval"
done
