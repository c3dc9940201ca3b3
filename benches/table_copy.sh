#!/usr/bin/env bash
# examples/table_copy against the psql pipe (`psql -c '\copy … to stdout' |
# psql -c '\copy … from stdin'`), on the same 1,000,000-row table, between two
# databases of a throwaway cluster: wall time, client CPU (user + system, of
# every client process) and peak RSS (GNU time's %M: the largest process of
# the pipe), median of REPS runs by wall time, text and binary format.
#
#   bash benches/table_copy.sh            # REPS=5 ROWS=1000000 by default
#
# Needs the PostgreSQL server binaries (the `postgresql` package) and
# /usr/bin/time; runs the server as `postgres` when started as root.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
ROWS=${ROWS:-1000000}

cargo build --release -q --example table_copy
EXAMPLE=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/table_copy
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PORT=$((50000 + RANDOM % 10000))
WORK=$(mktemp -d)
chmod 755 "$WORK"

as_server() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ "$(id -u)" = 0 ]; then chown postgres "$WORK"; fi
as_server "$BIN/initdb" -D "$WORK/data" -U postgres -A trust >/dev/null
as_server "$BIN/pg_ctl" -D "$WORK/data" -l "$WORK/log" -w \
  -o "-p $PORT -k $WORK -c listen_addresses='' -c shared_buffers=256MB -c max_wal_size=4GB" start >/dev/null
trap 'as_server "$BIN/pg_ctl" -D "$WORK/data" -m fast stop >/dev/null; rm -rf "$WORK"' EXIT

FROM="host=$WORK port=$PORT user=postgres dbname=tc_src"
TO="host=$WORK port=$PORT user=postgres dbname=tc_dst"
PSQL="$BIN/psql -X -q -v ON_ERROR_STOP=1"
WIDE="CREATE TABLE wide (id int PRIMARY KEY, name text, amount numeric, seen timestamptz, tags text[])"
$PSQL -h "$WORK" -p "$PORT" -U postgres -d postgres -c "CREATE DATABASE tc_src" -c "CREATE DATABASE tc_dst"
$PSQL "$FROM" -c "$WIDE" -c "INSERT INTO wide SELECT g, 'name ' || g, g * 1.5, \
  '2026-01-01'::timestamptz + g * interval '1 second', ARRAY['a', g::text] \
  FROM generate_series(1, $ROWS) g" -c "ANALYZE wide"
$PSQL "$TO" -c "$WIDE"
SIZE=$($PSQL "$FROM" -At -c "SELECT pg_size_pretty(pg_total_relation_size('wide'))")

# One run of "$@" after emptying the target: prints "seconds kilobytes cpu".
measure() {
  $PSQL "$TO" -c "TRUNCATE wide" -c "CHECKPOINT" >/dev/null
  /usr/bin/time -f "%e %M %U %S" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/stderr" || {
    cat "$WORK/stderr" >&2
    exit 1
  }
  local copied
  copied=$($PSQL "$TO" -At -c "SELECT count(*) FROM wide")
  [ "$copied" = "$ROWS" ] || { echo "copied $copied rows, expected $ROWS" >&2; exit 1; }
  awk '{printf "%s %s %.2f\n", $1, $2, $3 + $4}' "$WORK/time"
}

# Median of REPS runs by wall time: "seconds kilobytes cpu".
median() {
  for _ in $(seq "$REPS"); do measure "$@"; done | sort -n | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'
}

# The psql pipe for a format, as one shell command.
pipe() {
  echo "$PSQL \"$FROM\" -c '\\copy wide to stdout (format $1)' | $PSQL \"$TO\" -c '\\copy wide from stdin (format $1)'"
}

echo "table_copy vs psql pipe: $ROWS rows ($SIZE), PostgreSQL $($PSQL "$FROM" -At -c 'SHOW server_version'), median of $REPS"
printf '%-28s %10s %12s %14s\n' "" "seconds" "client CPU s" "peak RSS MiB"
for format in text binary; do
  for tool in table_copy psql; do
    if [ "$tool" = table_copy ]; then
      read -r secs kb cpu < <(median "$EXAMPLE" --from "$FROM" --to "$TO" --table wide --format "$format")
    else
      read -r secs kb cpu < <(median bash -c "$(pipe "$format")")
    fi
    printf '%-28s %10s %12s %14s\n' "$tool ($format)" "$secs" "$cpu" "$(awk "BEGIN {printf \"%.1f\", $kb / 1024}")"
  done
done
