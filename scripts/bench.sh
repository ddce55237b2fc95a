#!/usr/bin/env bash
# Benchmarks the hub and the idle agent on this machine, and checks them against our bars:
#
#   hub on SQLite   1000 devices heartbeating: >= 5000 heartbeats/s, p99 latency < 50 ms, no errors
#   idle agent      connected and idle: resident memory < 20 MB, CPU < 0.1 % (of one core)
#
# Everything runs on 127.0.0.1 in throwaway directories (mktemp -d) that are removed afterwards.
#
# Usage: scripts/bench.sh
# Environment (all optional):
#   CARGO_TARGET_DIR         where cargo builds (default: target)
#   SURPLUS_BENCH_POSTGRES   a postgres:// URL: also benchmark the hub on it (reported, no bar)
#   BENCH_DEVICES            simulated devices (default 1000)
#   BENCH_CONCURRENCY        heartbeats in flight (default 64)
#   BENCH_SECONDS            measured seconds of heartbeats, after a 3 s warm-up (default 20)
#   BENCH_IDLE_SECONDS       length of the idle agent's measuring window (default 60)
#   BENCH_KEEP=1             keep the temporary directory (logs, databases) for inspection
# Exit status: 0 when every bar is met, 1 when one is missed or the benchmark could not run.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target="$root/$target" ;; esac
bin="$target/release"

devices=${BENCH_DEVICES:-1000}
concurrency=${BENCH_CONCURRENCY:-64}
seconds=${BENCH_SECONDS:-20}
idle_seconds=${BENCH_IDLE_SECONDS:-60}
sample_every=5
for setting in devices concurrency seconds idle_seconds; do
  [[ ${!setting} =~ ^[1-9][0-9]*$ ]] || { echo "bench: $setting must be a positive whole number" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/surplus-bench.XXXXXX")
children=()   # processes we started, stopped on exit
summary=()    # rows of the final table
missed=0      # how many bars were missed

# --- helpers -----------------------------------------------------------------------------------

say() { printf '%s\n' "$*"; }
fail() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# Stops one process we started: TERM, up to 10 s to exit, then KILL. Forgets it afterwards, so
# that a later cleanup never signals a reused PID.
stop_pid() {
  local pid=$1 deadline=$((SECONDS + 10)) other kept=()
  if kill -TERM "$pid" 2>/dev/null; then
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  for other in "${children[@]}"; do
    if [ "$other" != "$pid" ]; then kept+=("$other"); fi
  done
  children=("${kept[@]}")
}

cleanup() {
  local pid
  for pid in "${children[@]}"; do stop_pid "$pid"; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    say "bench: kept $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_until SECONDS WHAT LOG COMMAND...: runs COMMAND every 0.2 s until it succeeds; gives up
# after SECONDS, showing the end of LOG.
wait_until() {
  local timeout=$1 what=$2 log=$3 deadline
  shift 3
  deadline=$((SECONDS + timeout))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      tail -n 20 "$log" >&2 || true
      fail "gave up after ${timeout}s waiting for $what (log above: $log)"
    fi
    sleep 0.2
  done
}

# Fails with the end of LOG when process PID has exited.
require_alive() {
  local pid=$1 name=$2 log=$3
  if ! kill -0 "$pid" 2>/dev/null; then
    tail -n 20 "$log" >&2 || true
    fail "$name exited unexpectedly (log above: $log)"
  fi
}

# json_get FILE KEY.PATH: prints one field of a JSON document (non-strings as JSON: true, 12.5).
json_get() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2].split("."):
    value = value.get(key) if isinstance(value, dict) else None
print(value if isinstance(value, str) else json.dumps(value))
EOF
}

# Number comparisons (the figures are decimals, which bash arithmetic cannot do).
at_least() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
below() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
fmt() { awk -v value="$2" "BEGIN { printf \"$1\", value }"; }

# row WHAT MEASURED BAR VERDICT: one line of the summary table.
row() { summary+=("$(printf '%-34s %-20s %-14s %s' "$1" "$2" "$3" "$4")"); }

# check LABEL MEASURED BAR TEST...: a row whose verdict is the outcome of the TEST command.
check() {
  local label=$1 measured=$2 bar=$3
  shift 3
  if "$@"; then
    row "$label" "$measured" "$bar" PASS
  else
    row "$label" "$measured" "$bar" FAIL
    missed=$((missed + 1))
  fi
}

# start_hub DATABASE DIR: serves a hub on a free port; sets hub_pid and hub_url.
start_hub() {
  local database=$1 dir=$2 port
  mkdir -p "$dir"
  port=$(free_port)
  "$bin/surplus-hub" serve --listen "127.0.0.1:$port" --database "$database" \
    --staging "$dir/staging" >"$dir/hub.log" 2>&1 &
  hub_pid=$!
  children+=("$hub_pid")
  hub_url="http://127.0.0.1:$port"
  hub_log="$dir/hub.log"
  wait_until 30 "the hub at $hub_url to answer /healthz" "$hub_log" hub_ready
}

hub_ready() {
  require_alive "$hub_pid" "the hub" "$hub_log"
  curl -fsS --max-time 2 "$hub_url/healthz" >/dev/null 2>&1
}

# --- build -------------------------------------------------------------------------------------

say "== building release binaries into $target"
cargo build --release -p surplus-hub -p surplus-cli -p surplus-loadgen

# Keep a developer's own hub config (~/.config/surplus-hub/hub.toml) and environment out of it.
export XDG_CONFIG_HOME="$work/config"
unset SURPLUS_HUB SURPLUS_DATA_DIR SURPLUS_HUB_CONFIG SURPLUS_PROBE_OVERRIDE SURPLUS_LOG

# --- a. hub heartbeats -------------------------------------------------------------------------

# hub_heartbeats LABEL DATABASE: loads a fresh hub process on DATABASE. Leaves the loadgen's JSON
# in $work/LABEL.json and the figures in rate, p50, p90, p99, max (ms) and errors.
hub_heartbeats() {
  local label=$1 database=$2 result="$work/$1.json"
  say ""
  say "== hub heartbeats on $label: $devices devices, $concurrency connections, ${seconds} s"
  start_hub "$database" "$work/hub-$label"
  "$bin/surplus-loadgen" heartbeats --hub "$hub_url" --devices "$devices" \
    --concurrency "$concurrency" --seconds "$seconds" --warmup 3 --json >"$result" \
    || { tail -n 20 "$hub_log" >&2; fail "the load generator failed against the hub on $label"; }
  stop_pid "$hub_pid"
  rate=$(fmt '%.0f' "$(json_get "$result" heartbeats_per_second)")
  p50=$(fmt '%.2f' "$(json_get "$result" p50_ms)")
  p90=$(fmt '%.2f' "$(json_get "$result" p90_ms)")
  p99=$(fmt '%.2f' "$(json_get "$result" p99_ms)")
  max=$(fmt '%.2f' "$(json_get "$result" max_ms)")
  errors=$(json_get "$result" errors)
  say "registration:   $(fmt '%.1f' "$(json_get "$result" registration_seconds)") s"
  say "heartbeats/s:   $rate ($(json_get "$result" heartbeats) in $(fmt '%.1f' "$(json_get "$result" seconds)") s)"
  say "latency:        p50 $p50 ms, p90 $p90 ms, p99 $p99 ms, max $max ms"
  say "errors:         $errors (by kind: $(json_get "$result" errors_by_kind))"
}

hub_heartbeats sqlite "sqlite://$work/hub-sqlite/hub.db"
if at_least "$rate" 5000 && below "$p99" 50 && [ "$errors" = 0 ]; then
  say "bar (>= 5000/s, p99 < 50 ms, no errors): met"
else
  say "bar (>= 5000/s, p99 < 50 ms, no errors): MISSED"
fi
check "hub heartbeats/s (SQLite)" "$rate" ">= 5000" at_least "$rate" 5000
check "hub p99 latency (SQLite)" "$p99 ms" "< 50 ms" below "$p99" 50
check "hub errors (SQLite)" "$errors" "0" [ "$errors" = 0 ]
row "hub p50 / p90 / max (SQLite)" "$p50/$p90/$max" "ms" "-"

postgres=${SURPLUS_BENCH_POSTGRES:-}
if [[ $postgres =~ ^postgres(ql)?:// ]]; then
  hub_heartbeats postgres "$postgres"
  row "hub heartbeats/s (PostgreSQL)" "$rate" "report only" "-"
  row "hub p99 latency (PostgreSQL)" "$p99 ms" "report only" "-"
  row "hub errors (PostgreSQL)" "$errors" "report only" "-"
elif [ -n "$postgres" ]; then
  say "bench: SURPLUS_BENCH_POSTGRES is not a postgres:// URL; skipping PostgreSQL" >&2
fi

# --- b. idle agent -----------------------------------------------------------------------------

say ""
say "== idle agent: connected, consenting, nothing to do; ${idle_seconds} s window"
start_hub "sqlite://$work/hub-agent/hub.db" "$work/hub-agent"
agent_dir="$work/agent"
export SURPLUS_CREDENTIALS=file SURPLUS_PASSWORD=bench-password-1
surplus() { "$bin/surplus" --data-dir "$agent_dir" "$@"; }
surplus --hub "$hub_url" signup --email bench-agent@bench.example >/dev/null
surplus device register --name bench >/dev/null
surplus consent --storage on --compute on >/dev/null
surplus quota --storage 64MiB --floor 1GiB >/dev/null

# Started directly, not through the function, so that $! is the agent's own PID.
"$bin/surplus" --data-dir "$agent_dir" agent >"$work/agent.log" 2>&1 &
agent_pid=$!
children+=("$agent_pid")

agent_connected() {
  require_alive "$agent_pid" "the agent" "$work/agent.log"
  surplus status --json >"$work/status.json" 2>/dev/null \
    && [ "$(json_get "$work/status.json" agent.connected)" = true ]
}
wait_until 60 "the agent to connect to $hub_url" "$work/agent.log" agent_connected
say "agent $agent_pid connected; letting it settle for 5 s"
sleep 5

clock_ticks=$(getconf CLK_TCK)
cpu_ticks() {  # utime + stime of PID, in clock ticks (fields 14 and 15 of /proc/PID/stat)
  local stat fields
  stat=$(<"/proc/$1/stat")
  read -r -a fields <<<"${stat##*) }"   # after the command name, which may hold spaces
  echo $((fields[11] + fields[12]))
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# VmRSS counts KiB; the bar is in MB (10^6 bytes), the stricter reading.
mb() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb * 1024 / 1e6 }'; }

started_at=$EPOCHREALTIME
ticks_before=$(cpu_ticks "$agent_pid")
rss_max=$(rss_kb "$agent_pid")
elapsed=0
while ((elapsed < idle_seconds)); do
  step=$((idle_seconds - elapsed < sample_every ? idle_seconds - elapsed : sample_every))
  sleep "$step"
  elapsed=$((elapsed + step))
  require_alive "$agent_pid" "the agent" "$work/agent.log"
  rss=$(rss_kb "$agent_pid")
  if ((rss > rss_max)); then rss_max=$rss; fi
  say "  t+${elapsed}s  resident $(mb "$rss") MB"
done
ticks_after=$(cpu_ticks "$agent_pid")
window=$(awk -v a="$started_at" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')

rss_mb=$(mb "$rss_max")
cpu_percent=$(awk -v t="$((ticks_after - ticks_before))" -v hz="$clock_ticks" -v s="$window" \
  'BEGIN { printf "%.3f", t / hz / s * 100 }')
say "resident memory: $rss_mb MB at most"
say "CPU:             $cpu_percent % of one core over $(fmt '%.1f' "$window") s ($((ticks_after - ticks_before)) ticks of 1/$clock_ticks s)"
check "idle agent resident memory" "$rss_mb MB" "< 20 MB" below "$rss_mb" 20
check "idle agent CPU (${idle_seconds} s window)" "$cpu_percent %" "< 0.1 %" below "$cpu_percent" 0.1
stop_pid "$agent_pid"
stop_pid "$hub_pid"

# --- summary -----------------------------------------------------------------------------------

say ""
say "== summary ($(nproc) CPUs, $(uname -sr))"
printf '%-34s %-20s %-14s %s\n' "what" "measured" "bar" "verdict"
printf '%s\n' "${summary[@]}"
if ((missed > 0)); then
  say "$missed bar(s) missed"
  exit 1
fi
say "all bars met"
