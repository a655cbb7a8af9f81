#!/usr/bin/env bash
# Start a private PostgreSQL server for ktune on 127.0.0.1 and print its URL (`stop` stops it; idempotent).
#
#   scripts/postgres.sh            install Debian's postgresql if missing, init + start, create the db, print URL
#   scripts/postgres.sh url        print the URL only
#   scripts/postgres.sh status     exit 0 when the server is running
#   scripts/postgres.sh stop       stop the server (the data dir is kept; `rm -rf "$KTUNE_PG_DIR/ktune-pg-PORT"`)
#
# Settings: KTUNE_PG_DIR (parent of the data dir, default /tmp), KTUNE_PG_PORT (default 55432),
# KTUNE_PG_DB (default ktune). Trust auth on loopback only: a development and CI server, not a production one.
# Typical use:  export KTUNE_TEST_PG_URL=$(scripts/postgres.sh)
set -euo pipefail

PORT="${KTUNE_PG_PORT:-55432}"
ROOT="${KTUNE_PG_DIR:-/tmp}/ktune-pg-${PORT}"
DATA="$ROOT/data"
LOG="$ROOT/server.log"
DB="${KTUNE_PG_DB:-ktune}"
URL="postgresql://postgres@127.0.0.1:${PORT}/${DB}"

log() { echo "postgres.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

find_bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$d" && -x "$d/initdb" ]]; then echo "$d"; return; fi
    if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then pg_config --bindir; fi
}

install_postgres() {
    [[ $(id -u) -eq 0 ]] || die "PostgreSQL is not installed; run as root, or: sudo apt-get install -y postgresql"
    log "installing Debian's postgresql (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
}

# As root, the server must run as the unprivileged `postgres` user (initdb and postgres refuse root).
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else (cd / && "$@"); fi
}

BIN="$(find_bindir)"
running() { [[ -n "$BIN" && -f "$DATA/PG_VERSION" ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

start() {
    if [[ -z "$BIN" ]]; then install_postgres; BIN="$(find_bindir)"; fi
    [[ -n "$BIN" ]] || die "initdb not found after installing postgresql; is /usr/lib/postgresql/*/bin there?"
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
        log "initialising a new cluster in $DATA"
        mkdir -p "$ROOT"
        if [[ $(id -u) -eq 0 ]]; then chown postgres: "$ROOT"; fi
        as_owner test -w "$ROOT" || die "user postgres cannot write $ROOT; set KTUNE_PG_DIR to a folder it can reach"
        as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C \
            >"$ROOT/initdb.log" 2>&1 || die "initdb failed; see $ROOT/initdb.log"
    fi
    if running; then
        log "already running on 127.0.0.1:$PORT ($DATA)"
    else
        log "starting on 127.0.0.1:$PORT (log: $LOG)"
        as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start \
            -o "-p $PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$ROOT" >&2 \
            || die "the server did not start; see $LOG"
    fi
    local psql=("$BIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1)
    if [[ -z $("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname='$DB'") ]]; then
        log "creating database $DB"
        "${psql[@]}" -c "CREATE DATABASE \"$DB\" TEMPLATE template0 ENCODING 'UTF8'" >&2
    fi
    echo "$URL"
}

stop() {
    if running; then
        as_owner "$BIN/pg_ctl" -D "$DATA" -w -m fast stop >&2
    else
        log "not running ($DATA)"
    fi
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    url) echo "$URL" ;;
    status) running ;;
    *) die "unknown command ${1}; choose one of start, stop, status, url" ;;
esac
