#!/bin/bash
# Spawn stamp for `deno task bench`: records the moment a supervisor spawned
# the app, then becomes the real stand-in app with the same pid (exec), so
# signals and exit status are the stand-in's own.
#
# Why a shell in front: the stand-in is a Deno program that needs tens of
# milliseconds to boot before it can record anything, which would be charged
# to whichever supervisor spawned it. $EPOCHREALTIME is a bash builtin (no
# fork), so this line lands within about a millisecond of the exec; the bench
# measures that overhead and reports it.
#
# usage: app.sh command [args...]   (APP_STATE_FILE names the JSON-lines file)
us=${EPOCHREALTIME/[.,]/}
printf '{"event":"spawn","pid":%d,"at":%s.%s}\n' "$$" "${us:0:${#us}-3}" "${us:${#us}-3}" \
  >>"${APP_STATE_FILE:?APP_STATE_FILE is required}"
exec "$@"
