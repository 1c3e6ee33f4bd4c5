#!/usr/bin/env bash
# Starts the distributed topology on this machine: 2 api, 2 worker and 2 edge processes of the
# same mediahost binary, nginx balancing the apis, and Prometheus scraping every process, on the
# PostgreSQL, RabbitMQ and Redis already running here and a local S3-compatible server.
#
#   examples/distributed/up.sh      # returns once every process answers /readyz
#   examples/distributed/down.sh    # stops everything up.sh started
#
# Ports (none of mediahost's defaults): nginx 18080, api 18181/18182, edge 18281/18282,
# worker health and metrics 18391/18392, gRPC of the apis 18451/18452 and of the workers
# 18491/18492, Prometheus 19090.
#
# It starts from a clean slate each time: the PostgreSQL database `mediahost_distributed` is
# recreated, Redis database 3 flushed, the RabbitMQ queue `mediahost-distributed.transcode`
# purged and the bucket `mediahost-distributed` created on a fresh S3 server. None of these are
# what the test suite uses.
#
# Environment:
#   MEDIAHOST_DIST_DIR   run dir: logs, pids, data dirs, Prometheus's TSDB
#                        (default ${XDG_STATE_HOME:-~/.local/state}/mediahost-distributed)
#   MEDIAHOST_BIN        the mediahost binary (default: target/release/mediahost, built if absent)
#   MEDIAHOST_DIST_POSTGRES_ADMIN_URL  where the database is (re)created
#                        (default postgres://postgres@127.0.0.1:5432/postgres)
#   MEDIAHOST_S3_ENDPOINT + AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY: an S3 server to use (its
#                        bucket `mediahost-distributed` must exist) instead of starting moto
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
run="${MEDIAHOST_DIST_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/mediahost-distributed}"
admin_url="${MEDIAHOST_DIST_POSTGRES_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
database=mediahost_distributed
queue=mediahost-distributed.transcode
bucket=mediahost-distributed
redis_db=3
venv="${MEDIAHOST_VENV:-$HOME/.cache/mediahost-venv}"
# name, roles, port answering /readyz
processes=(
  "api-1 api 18181"
  "api-2 api 18182"
  "worker-1 worker 18391"
  "worker-2 worker 18392"
  "edge-1 edge 18281"
  "edge-2 edge 18282"
)

say() { echo "up: $*" >&2; }
fail() {
  echo "up: error: $*" >&2
  exit 1
}

# Whether something accepts connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ -f "$run/pids" ]; then
  fail "a topology is already running from $run (pids in $run/pids); run $here/down.sh first"
fi

# psql recreates the database, curl waits for the processes.
"$repo/scripts/apt-install" nginx prometheus postgresql-client curl

bin="${MEDIAHOST_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/mediahost}"
if [ -z "${MEDIAHOST_BIN:-}" ] && [ ! -x "$bin" ]; then
  say "building $bin"
  (cd "$repo" && cargo build --release --locked -p mediahost)
fi
[ -x "$bin" ] || fail "no mediahost binary at $bin (set MEDIAHOST_BIN)"

# The shared services must already run: name them when they do not.
psql "$admin_url" -Atqc 'SELECT 1' >/dev/null ||
  fail "PostgreSQL at $admin_url does not answer (MEDIAHOST_DIST_POSTGRES_ADMIN_URL)"
port_open 5672 || fail "RabbitMQ does not answer on 127.0.0.1:5672"
port_open 6379 || fail "Redis does not answer on 127.0.0.1:6379"
for port in 18080 18181 18182 18281 18282 18391 18392 18451 18452 18491 18492 19090; do
  port_open "$port" && fail "port $port is taken; is another topology or program using it?"
done

# Only a run dir of ours is emptied (MEDIAHOST_DIST_DIR might name any folder).
if [ -d "$run" ] && [ -n "$(ls -A "$run")" ] && [ ! -f "$run/.mediahost-distributed" ]; then
  fail "$run is not empty and not a run dir of up.sh; choose another MEDIAHOST_DIST_DIR"
fi
rm -rf "$run"
mkdir -p "$run"
touch "$run/.mediahost-distributed"
mkdir -p "$run/logs" "$run/data" "$run/nginx/logs" "$run/nginx/tmp" "$run/prometheus"
# From here on, a failure stops what was started.
on_exit() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    say "failed; stopping what started (logs in $run/logs)"
    "$here/down.sh" >&2 || true
  fi
}
trap on_exit EXIT
: >"$run/pids"

say "database $database: recreating"
PGOPTIONS="-c client_min_messages=warning" psql "$admin_url" -qv ON_ERROR_STOP=1 >/dev/null <<SQL
DROP DATABASE IF EXISTS $database WITH (FORCE);
CREATE DATABASE $database;
SQL
say "redis database $redis_db: flushing"
if command -v redis-cli >/dev/null; then
  redis-cli -n "$redis_db" FLUSHDB >/dev/null
else
  say "redis-cli is missing; not flushing (locks and lookups expire by themselves)"
fi
if command -v rabbitmqctl >/dev/null && [ "$(id -u)" -eq 0 ]; then
  for q in "$queue" "$queue.dead"; do
    timeout 30 rabbitmqctl -q purge_queue "$q" >/dev/null 2>&1 || true
  done
fi

# Object storage: a fresh moto server unless one is given.
if [ -z "${MEDIAHOST_S3_ENDPOINT:-}" ]; then
  s3_env="$("$repo/scripts/s3-server" start)" || fail "cannot start the local S3 server (scripts/setup installs it)"
  eval "$s3_env"
  echo "$MEDIAHOST_S3_SERVER_DIR" >"$run/s3-server-dir"
  export MEDIAHOST_S3_ENDPOINT="$MEDIAHOST_TEST_S3_ENDPOINT"
  "$venv/bin/python" - "$MEDIAHOST_S3_ENDPOINT" "$bucket" <<'PY'
import sys, boto3
endpoint, bucket = sys.argv[1:]
boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
PY
fi
: "${AWS_ACCESS_KEY_ID:?set AWS_ACCESS_KEY_ID for $MEDIAHOST_S3_ENDPOINT}"
: "${AWS_SECRET_ACCESS_KEY:?set AWS_SECRET_ACCESS_KEY for $MEDIAHOST_S3_ENDPOINT}"
region="${AWS_REGION:-us-east-1}"

# Runs "$@" in the run dir in a session of its own (signals to the caller's terminal or process
# group leave it alone), its output in logs/$name.log, and records its pid (setsid execs the
# program in the same process, as a background job is no process group leader).
start() {
  local name=$1
  shift
  cd "$run"
  setsid "$@" </dev/null >"$run/logs/$name.log" 2>&1 &
  echo "$name $!" >>"$run/pids"
  cd - >/dev/null
}

# Each process sees only what the topology sets: nothing from the caller's environment (a
# DATABASE_URL or MEDIAHOST_* variable would override the config files).
start_mediahost() {
  local name=$1 roles=$2
  start "$name" env -i PATH="$PATH" HOME="$HOME" RUST_LOG="${RUST_LOG:-info,sqlx=warn}" \
    MEDIAHOST_S3_ENDPOINT="$MEDIAHOST_S3_ENDPOINT" AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
    AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" AWS_REGION="$region" \
    "$bin" serve --role "$roles" --config "$here/$name.toml"
}

# Waits until http://127.0.0.1:$2$3 answers 200 (or the process named $1 exits).
wait_for() {
  local name=$1 port=$2 path=$3 pid
  pid="$(awk -v n="$name" '$1 == n {print $2}' "$run/pids")"
  for _ in $(seq 1 600); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port$path" 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || fail "$name exited; its log ($run/logs/$name.log):
$(tail -n 20 "$run/logs/$name.log")"
    sleep 0.1
  done
  fail "$name did not answer http://127.0.0.1:$port$path within 60 s; $(curl -sS "http://127.0.0.1:$port$path" 2>&1)"
}

# The first api migrates the database; the others start once it is ready.
say "starting api-1"
start_mediahost api-1 api
wait_for api-1 18181 /readyz
for entry in "${processes[@]:1}"; do
  read -r name roles _ <<<"$entry"
  say "starting $name"
  start_mediahost "$name" "$roles"
done
say "starting nginx on 127.0.0.1:18080"
start nginx nginx -p "$run/nginx/" -e logs/error.log -c "$here/nginx.conf"
say "starting prometheus on 127.0.0.1:19090"
start prometheus prometheus --config.file="$here/prometheus.yml" \
  --storage.tsdb.path="$run/prometheus" --web.listen-address=127.0.0.1:19090

for entry in "${processes[@]}"; do
  read -r name _ port <<<"$entry"
  wait_for "$name" "$port" /readyz
done
wait_for nginx 18080 /readyz
wait_for prometheus 19090 /-/ready

cat >"$run/env" <<EOF
export MEDIAHOST_DIST_DIR=$run
export MEDIAHOST_DIST_API=http://127.0.0.1:18080
export MEDIAHOST_DIST_DATABASE_URL=${admin_url%/*}/$database
export MEDIAHOST_DIST_PROMETHEUS=http://127.0.0.1:19090
export MEDIAHOST_S3_ENDPOINT=$MEDIAHOST_S3_ENDPOINT
export MEDIAHOST_S3_BUCKET=$bucket
export AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
export AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export AWS_REGION=$region
EOF
say "ready: api http://127.0.0.1:18080 (nginx), edges http://127.0.0.1:18281 and :18282, Prometheus http://127.0.0.1:19090"
say "run dir $run (logs/, env); stop with $here/down.sh"
