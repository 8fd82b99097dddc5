#!/usr/bin/env bash
# Starts a local Kafka-compatible broker (tansu) for development and tests.
#
#   scripts/dev-kafka.sh start     install tansu once (pinned), start it on
#                                  127.0.0.1:9092 from an empty folder, wait
#                                  until it answers, create the topics
#   scripts/dev-kafka.sh stop      stop it (memory storage: everything is lost)
#   scripts/dev-kafka.sh topics    (re)create the topics only
#
# Environment: KLAXON_KAFKA_PORT (9092), KLAXON_KAFKA_DIR (a temp folder),
# KLAXON_PARTITIONS (4).
set -euo pipefail

TANSU_VERSION=0.6.0
PORT=${KLAXON_KAFKA_PORT:-9092}
DIR=${KLAXON_KAFKA_DIR:-${TMPDIR:-/tmp}/klaxon-tansu-$PORT}
PARTITIONS=${KLAXON_PARTITIONS:-4}
BROKER=tcp://127.0.0.1:$PORT
# klaxon.nflog holds dispatch state per alerts partition: same partition
# count as klaxon.alerts.
TOPICS=(telemetry.metrics telemetry.logs telemetry.spans klaxon.alerts klaxon.nflog)

install() {
  if command -v tansu >/dev/null && tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    return
  fi
  echo "dev-kafka: installing tansu $TANSU_VERSION (about 10 minutes on 2 cores, once)" >&2
  # Without `dynostore` the only storage is null://, which drops every message.
  cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore
}

answering() {
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

create_topics() {
  for t in "${TOPICS[@]}"; do
    tansu topic create "$t" --partitions "$PARTITIONS" --broker "$BROKER" >/dev/null 2>&1 || true
  done
  for t in klaxon.dlq klaxon.silences klaxon.checkpoints; do
    tansu topic create "$t" --partitions 1 --broker "$BROKER" >/dev/null 2>&1 || true
  done
  echo "dev-kafka: topics ${TOPICS[*]} ($PARTITIONS partitions), klaxon.dlq, klaxon.silences and klaxon.checkpoints" >&2
}

start() {
  install
  if answering; then
    echo "dev-kafka: something already listens on 127.0.0.1:$PORT; using it" >&2
    create_topics
    return
  fi
  rm -rf "$DIR" && mkdir -p "$DIR"
  # From an empty folder: tansu reads `.env` from its working directory.
  # Loopback only: its default listener is 0.0.0.0.
  # Its own session, and no inherited descriptors beyond stdio, so that
  # whoever started this script is not kept waiting on them.
  (cd "$DIR" && exec setsid bash -c '
      for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done
      exec tansu broker --listener-url "$1" --advertised-listener-url "$1" --storage-engine memory://tansu/
    ' tansu "$BROKER" </dev/null >"$DIR/tansu.log" 2>&1 &
   echo $! >"$DIR/pid")
  for _ in $(seq 1 100); do
    if answering; then
      create_topics
      echo "dev-kafka: tansu $TANSU_VERSION on 127.0.0.1:$PORT (pid $(cat "$DIR/pid"), log $DIR/tansu.log)" >&2
      return
    fi
    sleep 0.1
  done
  echo "dev-kafka: tansu did not answer on 127.0.0.1:$PORT; its log:" >&2
  cat "$DIR/tansu.log" >&2
  exit 1
}

stop() {
  if [[ -f "$DIR/pid" ]]; then
    kill "$(cat "$DIR/pid")" 2>/dev/null || true
    rm -f "$DIR/pid"
    echo "dev-kafka: stopped" >&2
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  topics) create_topics ;;
  install) install ;;
  *) echo "usage: $0 [start|stop|topics|install]" >&2; exit 2 ;;
esac
