#!/usr/bin/env bash
# compare.sh: run the same `pubsub bench` load against pubsub and Mosquitto 2
# and compare how much broker CPU each spends per delivered message.
#
# Both brokers run as separate processes on 127.0.0.1; the load generator is
# a third process. On a shared machine absolute rates are noisy, so the
# figure to compare is delivered messages per broker CPU-second, measured
# from utime+stime in /proc/PID/stat before and after each run.
#
# Usage: bench/compare.sh [-h]
# Environment (defaults in brackets):
#   FANOUT_RATE   msgs/s published in the fan-out run, 1 -> 100 subscribers [2000]
#   FANIN_RATE    msgs/s per publisher in the fan-in run, 50 -> 1 [2000]
#   DURATION      seconds each throttled run lasts [10]
#   SIZE          payload bytes [64]
#   RUNS          how many times each run is repeated [1]
#   UNTHROTTLED   1 adds runs without --rate (loss becomes possible) [0]
#   MOSQUITTO     the mosquitto binary [mosquitto]
#   PUBSUB_GOMAXPROCS GOMAXPROCS for the pubsub node only (the load generator keeps the default) []
#   MOSQUITTO_NODELAY 1 sets set_tcp_nodelay in Mosquitto, as pubsub does [1]
#   KEEP          1 keeps the work directory (configs, logs, JSON) [0]
# Needs: go, jq, mosquitto (Debian package `mosquitto`, version 2).
set -euo pipefail

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
	sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
	exit 0
fi

FANOUT_RATE=${FANOUT_RATE:-2000}
FANIN_RATE=${FANIN_RATE:-2000}
DURATION=${DURATION:-10}
SIZE=${SIZE:-64}
RUNS=${RUNS:-1}
UNTHROTTLED=${UNTHROTTLED:-0}
MOSQUITTO=${MOSQUITTO:-mosquitto}
KEEP=${KEEP:-0}

die() { echo "compare.sh: $*" >&2; exit 1; }
for tool in go jq "$MOSQUITTO" getconf; do
	command -v "$tool" >/dev/null || die "$tool not found (see the header of this script)"
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/pubsub-compare.XXXXXX")
pids=()
cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ $KEEP == 1 ]]; then
		echo "work directory kept: $work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

clk_tck=$(getconf CLK_TCK)

# free_port prints a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
	local port
	for _ in $(seq 100); do
		port=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return
		fi
	done
	die "no free port found"
}

# wait_port waits up to 10 s for a listener on 127.0.0.1:$1 (owned by pid $2,
# logging to $3).
wait_port() {
	local deadline=$((SECONDS + 10))
	until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
		kill -0 "$2" 2>/dev/null || die "broker (pid $2) exited: $(tail -5 "$3")"
		((SECONDS < deadline)) || die "nothing listens on 127.0.0.1:$1 after 10 s"
		sleep 0.1
	done
}

# cpu_ticks prints utime+stime of a process in clock ticks: fields 14 and 15
# of /proc/PID/stat, counted after the ")" that ends the command name
# (which may itself contain spaces).
cpu_ticks() {
	local stat
	stat=$(<"/proc/$1/stat") || die "process $1 is gone"
	stat=${stat##*) }
	awk '{ print $12 + $13 }' <<<"$stat"
}

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "building pubsub..." >&2
(cd "$repo" && go build -trimpath -o "$work/pubsub" ./cmd/pubsub)
bin=$work/pubsub

pubsub_port=$(free_port)
mkdir -p "$work/pubsub-data"
# --no-auth: Mosquitto runs with allow_anonymous, so neither checks keys.
env ${PUBSUB_GOMAXPROCS:+GOMAXPROCS=$PUBSUB_GOMAXPROCS} "$bin" serve --listen "127.0.0.1:$pubsub_port" --log-level warn --data-dir "$work/pubsub-data" --no-auth \
	>"$work/pubsub.log" 2>&1 &
pubsub_pid=$!
pids+=("$pubsub_pid")

mosquitto_port=$(free_port)
# max_queued_messages and max_queued_bytes are lifted so Mosquitto never
# drops for queue length during the test: loss then means the same thing for
# both brokers (a subscriber that could not keep up).
# set_tcp_nodelay: pubsub sends every message at once (TCP_NODELAY); by
# default Mosquitto leaves Nagle on, which batches small writes and so costs
# less CPU per message at the price of milliseconds of latency (its p50 in
# fan-in is ~15 ms against pubsub's ~0.2 ms). MOSQUITTO_NODELAY=1 (the
# default) compares both with the same latency contract; 0 runs Mosquitto
# as shipped.
nodelay=""
if [ "${MOSQUITTO_NODELAY:-1}" = 1 ]; then nodelay="set_tcp_nodelay true"; fi
cat >"$work/mosquitto.conf" <<EOF
listener $mosquitto_port 127.0.0.1
$nodelay
allow_anonymous true
persistence false
max_queued_messages 10000000
max_queued_bytes 0
log_dest stderr
log_type error
log_type warning
EOF
"$MOSQUITTO" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
mosquitto_pid=$!
pids+=("$mosquitto_pid")

wait_port "$pubsub_port" "$pubsub_pid" "$work/pubsub.log"
wait_port "$mosquitto_port" "$mosquitto_pid" "$work/mosquitto.log"

# scenario NAME PUBS SUBS RATE MSGS: one line per scenario, run against both
# brokers one after the other so drifting machine load hits both alike.
scenarios=(
	"fan-out 1 100 $FANOUT_RATE $((FANOUT_RATE * DURATION))"
	"fan-in 50 1 $FANIN_RATE $((50 * FANIN_RATE * DURATION))"
)
if [[ $UNTHROTTLED == 1 ]]; then
	scenarios+=(
		"fan-out-max 1 100 0 $((FANOUT_RATE * DURATION))"
		"fan-in-max 50 1 0 $((50 * FANIN_RATE * DURATION))"
	)
fi

results=$work/results.tsv
: >"$results"

run_one() { # broker pid port scenario pubs subs rate msgs run
	local broker=$1 pid=$2 port=$3 name=$4 pubs=$5 subs=$6 rate=$7 msgs=$8 run=$9
	local out="$work/$broker-$name-$run.json" before after rc=0
	echo "run $run: $name on $broker ($pubs -> $subs, $msgs msgs, rate ${rate:-0}/s per publisher)" >&2
	before=$(cpu_ticks "$pid")
	"$bin" bench --server "127.0.0.1:$port" --json --pubs "$pubs" --subs "$subs" --msgs "$msgs" \
		--size "$SIZE" --qos 0 --rate "$rate" --timeout 120s --topic "bench/$name" \
		>"$out" 2>"$work/$broker-$name-$run.err" || rc=$?
	after=$(cpu_ticks "$pid")
	if ! jq -e .received "$out" >/dev/null 2>&1; then
		die "bench against $broker failed (exit $rc): $(cat "$work/$broker-$name-$run.err")"
	fi
	jq -r --arg broker "$broker" --arg scenario "$name" --argjson run "$run" \
		--argjson ticks "$((after - before))" --argjson hz "$clk_tck" '
		($ticks / $hz) as $cpu |
		[$broker, $scenario, $run, .received, .lost, .dropped_subscribers,
		 ($cpu * 100 | round / 100),
		 (if $cpu > 0 then (.received / $cpu | round) else 0 end),
		 .aggregate.deliver.msgs_per_s,
		 .aggregate.latency_us.p50, .aggregate.latency_us.p99] | @tsv' "$out" >>"$results"
}

for run in $(seq "$RUNS"); do
	for s in "${scenarios[@]}"; do
		read -r name pubs subs rate msgs <<<"$s"
		run_one pubsub "$pubsub_pid" "$pubsub_port" "$name" "$pubs" "$subs" "$rate" "$msgs" "$run"
		run_one mosquitto "$mosquitto_pid" "$mosquitto_port" "$name" "$pubs" "$subs" "$rate" "$msgs" "$run"
	done
done

fmt_us() { # microseconds -> human
	awk -v us="$1" 'BEGIN {
		if (us >= 1e6) printf "%.2fs", us / 1e6
		else if (us >= 1e3) printf "%.2fms", us / 1e3
		else printf "%.0fµs", us }'
}

echo
printf '| %-9s | %-11s | %3s | %10s | %7s | %7s | %8s | %14s | %10s | %9s | %9s |\n' \
	broker scenario run delivered lost dropped "CPU s" "msgs/CPU-s" "msgs/s" p50 p99
echo '|-----------|-------------|----:|-----------:|--------:|--------:|---------:|---------------:|-----------:|----------:|----------:|'
while IFS=$'\t' read -r broker scenario run delivered lost dropped cpu per rate p50 p99; do
	printf '| %-9s | %-11s | %3s | %10s | %7s | %7s | %8s | %14s | %10s | %9s | %9s |\n' \
		"$broker" "$scenario" "$run" "$delivered" "$lost" "$dropped" "$cpu" "$per" "$rate" \
		"$(fmt_us "$p50")" "$(fmt_us "$p99")"
done <"$results"

# The acceptance figure: pubsub's msgs per broker CPU-second over
# Mosquitto's, per scenario, from the totals of all runs.
echo
awk -F'\t' '
	{ msgs[$1 FS $2] += $4; cpu[$1 FS $2] += $7; seen[$2] = 1 }
	END {
		for (s in seen) {
			p = cpu["pubsub" FS s] > 0 ? msgs["pubsub" FS s] / cpu["pubsub" FS s] : 0
			m = cpu["mosquitto" FS s] > 0 ? msgs["mosquitto" FS s] / cpu["mosquitto" FS s] : 0
			ratio = m > 0 ? p / m : 0
			verdict = p >= m ? "" : "  (pubsub is behind)"
			printf "%-11s pubsub %.0f vs mosquitto %.0f msgs/CPU-s: ratio %.2f%s\n", s, p, m, ratio, verdict
		}
	}' "$results" | sort
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
rev=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)
echo "pubsub at $rev ($(go env GOVERSION)), $("$MOSQUITTO" -h 2>&1 | head -1)"
