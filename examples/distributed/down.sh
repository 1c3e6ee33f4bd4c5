#!/usr/bin/env bash
# Stops what examples/distributed/up.sh started (the processes in its run dir's pids file, and
# the S3 server if it started one): SIGTERM, so each finishes what it is doing, then SIGKILL for
# any still running after 20 s. Logs and data stay in the run dir until the next up.sh.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
run="${MEDIAHOST_DIST_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/mediahost-distributed}"

if [ ! -f "$run/pids" ]; then
  echo "down: nothing to stop ($run/pids is absent)" >&2
  exit 0
fi

# The pids still running the program up.sh started under that name (a pid may have been reused).
alive=()
while read -r name pid; do
  [ -n "$pid" ] || continue
  case "$name" in
    nginx) program=nginx ;;
    prometheus) program=prometheus ;;
    *) program=mediahost ;;
  esac
  if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q "$program"; then
    alive+=("$pid")
    kill -TERM "$pid" 2>/dev/null || true
  fi
done <"$run/pids"

for _ in $(seq 1 200); do
  still=()
  for pid in "${alive[@]}"; do
    kill -0 "$pid" 2>/dev/null && still+=("$pid")
  done
  ((${#still[@]})) || break
  sleep 0.1
done
for pid in "${still[@]}"; do
  echo "down: $pid did not stop within 20 s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
done

if [ -f "$run/s3-server-dir" ]; then
  MEDIAHOST_S3_SERVER_DIR="$(cat "$run/s3-server-dir")" "$repo/scripts/s3-server" stop
  rm -f "$run/s3-server-dir"
fi
rm -f "$run/pids"
echo "down: stopped (logs in $run/logs)" >&2
