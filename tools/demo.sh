#!/usr/bin/env bash
# tasad's embedded default: installs what is needed, builds, starts a private redis-server and
# the three daemons in a temporary directory (no systemd, no configuration), runs demo jobs end
# to end through tasactl, and stops everything again.
#   tools/demo.sh          run the demo and clean up
#   tools/demo.sh --keep   leave everything running and print how to use it
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0
[ "${1:-}" = "--keep" ] && keep=1

tools/install-deps.sh
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null

T=$(mktemp -d /tmp/tasad-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$T"
}
[ $keep -eq 1 ] || trap cleanup EXIT

mkdir -p "$T/queues" "$T/results"
cat > "$T/tasad.conf" <<CONF
redis = "unix://$T/redis.sock";
queues_dir = "$T/queues";
results_dir = "$T/results";
scheduler_socket = "$T/scheduler.sock";
results_socket = "$T/results.sock";
worker_socket_dir = "$T/worker";
work_dir = "$T/work";
policy_dirs = ["$PWD/policy"];
CONF
# A bytes-in, bytes-out queue (aiotask) and an argv queue whose arguments are checked (tasa).
cat > "$T/queues/wc.conf" <<CONF
command = ["/usr/bin/wc", "-w"];
concurrency = 2;
timeout = "30s";
policy = "strict";          # compute only: read stdin, write stdout
network = false;
CONF
cat > "$T/queues/greet.conf" <<CONF
command = ["/bin/echo", "hello,"];
concurrency = 2;
timeout = "30s";
max_args = 1;
arg_pattern = "[A-Za-z]+";
CONF

redis-server --port 0 --unixsocket "$T/redis.sock" --dir "$T" --save "" --appendonly yes \
  --daemonize no >"$T/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -s "$T/redis.sock" ping >/dev/null 2>&1 && break; sleep 0.1; done

export TASAD_CONF="$T/tasad.conf" TASAD_LOG_TARGET=stderr
build/daemons/scheduler/tasad-scheduler 2>>"$T/daemons.log" & pids+=($!)
build/daemons/results/tasad-results 2>>"$T/daemons.log" & pids+=($!)
build/daemons/worker/tasad-worker wc 2>>"$T/daemons.log" & pids+=($!)
build/daemons/worker/tasad-worker greet 2>>"$T/daemons.log" & pids+=($!)
for _ in $(seq 50); do [ -S "$T/scheduler.sock" ] && [ -S "$T/results.sock" ] && break; sleep 0.1; done

tasactl() { build/tools/tasactl/tasactl "$@"; }
echo "== a job with a payload on stdin, waited for:"
echo "the quick brown fox jumps over the lazy dog" | tasactl submit wc --stdin --wait
echo "== three jobs, one per input line, then their results:"
ids=$(printf 'Ada\nGrace\nLinus\n' | tasactl submit greet --each)
tasactl wait $ids
for id in $ids; do tasactl result "$id"; done
echo "== an argument the queue refuses:"
tasactl submit greet 'rm -rf /' || true
echo "== the queues:"
tasactl queues
echo "== results on disk under $T/results:"
find "$T/results" -name result.json | head -3

if [ $keep -eq 1 ]; then
  echo
  echo "Left running (pids ${pids[*]}). Use:  export TASAD_CONF=$T/tasad.conf; build/tools/tasactl/tasactl queues"
fi
