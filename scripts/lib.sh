# Shared by scripts/serve and scripts/test: a Python virtual environment and the local services.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@" || die "needs root for: $*"
  else die "needs root for: $*"
  fi
}

APT_UPDATED=""
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "missing $*, and this is not a Debian machine: install them by hand"
  if [ -z "$APT_UPDATED" ]; then
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

find_python() {
  local candidate
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
  apt_install python3 python3-venv
  echo python3
}

# ensure_venv REQUIREMENTS_FILE: a virtual environment with exactly those pins installed.
ensure_venv() {
  local requirements="$1" python stamp
  if [ ! -x "$VENV/bin/python" ]; then
    python="$(find_python)"
    "$python" -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
    log "creating $VENV"
    "$python" -m venv "$VENV"
  fi
  stamp="$VENV/.installed-$(basename "$requirements")"
  if [ ! -f "$stamp" ] || [ -n "$(find "$ROOT" -maxdepth 1 -name 'requirements*.txt' -newer "$stamp")" ]; then
    log "installing $(basename "$requirements")"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/$requirements"
    touch "$stamp"
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port="$1" name="$2" i
  for i in $(seq 1 60); do port_open "$port" && return 0; sleep 0.5; done
  die "$name did not come up on 127.0.0.1:$port"
}

ensure_postgres() {
  command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql
  if ! port_open 5432; then
    local version
    version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$version" ] || die "PostgreSQL is installed but has no cluster in /etc/postgresql"
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_port 5432 PostgreSQL
  fi
  # A stock Debian cluster asks for a password over TCP; the machines here trust 127.0.0.1.
  if ! PGPASSWORD=postgres PGCONNECT_TIMEOUT=5 psql -h 127.0.0.1 -U postgres -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; then
    log "setting the postgres role's password for TCP logins"
    as_root runuser -u postgres -- psql -q -c "ALTER ROLE postgres PASSWORD 'postgres'"
  fi
}

# ensure_database NAME: create the database on the local server when it does not exist yet.
ensure_database() {
  local psql=(psql -h 127.0.0.1 -U postgres -d postgres -tA)
  if [ -z "$(PGPASSWORD=postgres "${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$1'")" ]; then
    log "creating database $1"
    PGPASSWORD=postgres "${psql[@]}" -c "CREATE DATABASE \"$1\"" >/dev/null
  fi
}

ensure_redis() {
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  if ! port_open 6379; then
    log "starting Redis"
    mkdir -p /tmp/redis-scheduler
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /tmp/redis-scheduler --logfile /tmp/redis-scheduler/redis.log
    wait_port 6379 Redis
  fi
}

ensure_nats() {
  local nats
  nats="$(command -v nats-server || true)"
  [ -n "$nats" ] || [ ! -x /usr/sbin/nats-server ] || nats=/usr/sbin/nats-server
  if [ -z "$nats" ]; then apt_install nats-server; nats="$(command -v nats-server || echo /usr/sbin/nats-server)"; fi
  if ! port_open 4222; then
    log "starting NATS with JetStream"
    mkdir -p /tmp/nats-scheduler
    nohup setsid "$nats" -a 127.0.0.1 -p 4222 -js -sd /tmp/nats-scheduler \
      -l /tmp/nats-scheduler/nats.log >/dev/null 2>&1 &
    wait_port 4222 NATS
  fi
}
