#!/usr/bin/env bash
# End-to-end bench: on one broker and one topic,
#   1. drain the topic with a bare consumer that does no work (`klaxon drain`,
#      built from the same config and client settings as `klaxon run`);
#   2. run `klaxon run` over the same data;
# and report events/s for both, their ratio, and the close→publish latency.
#
#   benches/e2e.sh [EVENTS]        (default 1000000; needs the broker:
#                                   scripts/dev-kafka.sh start)
#
# `klaxon run` runs as deployed, with its dispatch stage (a second consumer
# group on the alerts topic; the bench creates its nflog and silences
# topics). KLAXON_DISPATCH=false measures the engine alone.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
BROKERS=${KLAXON_BROKERS:-127.0.0.1:9092}
BIN=${CARGO_TARGET_DIR:-target}/release/klaxon
cargo build --release --locked -q

id="bench-$(date +%s)"
tansu topic create "$id.telemetry" --partitions 4 --broker "tcp://$BROKERS" >/dev/null
tansu topic create "$id.alerts" --partitions 4 --broker "tcp://$BROKERS" >/dev/null
tansu topic create "$id.dlq" --partitions 1 --broker "tcp://$BROKERS" >/dev/null
tansu topic create "$id.nflog" --partitions 4 --broker "tcp://$BROKERS" >/dev/null
tansu topic create "$id.silences" --partitions 1 --broker "tcp://$BROKERS" >/dev/null

dir=$(mktemp -d)
config() { # group
  cat > "$dir/$1.yaml" <<YAML
kafka:
  brokers: "$BROKERS"
  group_id: $id-$1
  topics: [$id.telemetry]
  alerts_topic: $id.alerts
  dlq_topic: $id.dlq
rules: $PWD/rules/cloudmart
http:
  listen: 127.0.0.1:0
windows:
  idle_timeout: 500ms
dispatch:
  nflog_topic: $id.nflog
  silences_topic: $id.silences
  outbox: $dir/outbox-$1.jsonl
YAML
}
config drain
config run

# Event time ends about now (10 ms apart), so the dispatch stage sees the
# state changes as recent (it drops ones older than its 24 h dedup window).
start=$(date -u -d "@$(( $(date +%s) - N / 100 - 60 ))" +%Y-%m-%dT%H:%M:%SZ)
echo "== produce $N CloudMart events to $id.telemetry (4 partitions)"
$BIN produce --brokers "$BROKERS" --generate "$N" --series 1000 \
  --start "$start" --topic "$id.telemetry"

echo "== 1. bare drain"
/usr/bin/time -f "   drain: %U s user, %S s system" $BIN drain --config "$dir/drain.yaml" --expect "$N" 2>&1 | tee "$dir/drain.out"
echo "== 2. klaxon run"
echo "   (dispatch: ${KLAXON_DISPATCH:-true}; load: $(cut -d' ' -f1-3 /proc/loadavg))"
KLAXON_LOG=warn /usr/bin/time -f "   klaxon run: %U s user, %S s system, %M KiB max RSS" \
  $BIN run --config "$dir/run.yaml" --exit-at-end 2>&1 | tee "$dir/run.out"

drain=$(grep -oE '\(([0-9]+)/s\)' "$dir/drain.out" | tail -1 | tr -dc 0-9)
run=$(grep -oE '\(([0-9]+)/s\)' "$dir/run.out" | tail -1 | tr -dc 0-9)
python3 - "$drain" "$run" <<'PY'
import sys
d, r = (int(x) for x in sys.argv[1:])
print(f"== drain {d}/s, klaxon run {r}/s, ratio {r/d:.2f} (target >= 0.7)")
PY
rm -rf "$dir"
