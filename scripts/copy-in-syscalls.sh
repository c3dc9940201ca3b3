#!/usr/bin/env bash
# Counts the syscalls that write to the server socket during a 62 MiB COPY IN
# (examples/copy_in, 256 KiB chunks) over a Unix socket and over TLS, against a
# throwaway PostgreSQL cluster. Needs strace, openssl, python3, psql and the server
# binaries (PG_BINDIR, default Debian's 15). Run as root (the server runs as
# `postgres`) or as the user who owns the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
dir=$(mktemp -d /tmp/pgt-syscalls.XXXXXX)
as_server() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[[ $(id -u) -eq 0 ]] && chown postgres "$dir"
trap 'as_server "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_server "$bin/initdb" -A trust -U postgres -D "$dir/data" --no-sync >/dev/null
as_server openssl req -new -x509 -days 1 -nodes -subj /CN=localhost \
  -keyout "$dir/data/server.key" -out "$dir/data/server.crt" 2>/dev/null
printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nssl = on\nfsync = off\n" \
  "$port" "$dir" | as_server tee -a "$dir/data/postgresql.conf" >/dev/null
as_server "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null
psql -q -h "$dir" -p "$port" -U postgres -c "CREATE UNLOGGED TABLE t (id int, v text)"
python3 - "$dir/data.tsv" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(700000):
        f.write(f"{i}\tsome value number {i} padded out to about one hundred bytes long for the test.....\n")
PY
cargo build --release -q --example copy_in
for conn in "host=$dir port=$port user=postgres dbname=postgres" \
            "host=127.0.0.1 port=$port user=postgres dbname=postgres sslmode=require"; do
  psql -q -h "$dir" -p "$port" -U postgres -c "TRUNCATE t"
  strace -f -e trace=write,writev,sendto,sendmsg -e signal=none -o "$dir/trace" \
    target/release/examples/copy_in "$conn" "COPY t FROM STDIN" "$dir/data.tsv" 2>/dev/null
  # The socket's writes: not stderr (fd 2) and not tokio's eventfd wakeups (8-byte counters).
  calls=$(grep -vE '(write|writev)\(2,' "$dir/trace" | grep -vE 'write\([0-9]+, "\\1\\0\\0\\0\\0\\0\\0\\0", 8\)' |
    grep -cE '^[0-9]+ +(write|writev|sendto|sendmsg)\(')
  echo "$conn: $calls socket writes for 62 MiB ($((calls * 100 / 62)) per 100 MiB)"
done
