# shellcheck shell=bash
# Throwaway MariaDB for tests, the demo and benchmarks: its own data dir, port and socket,
# never the host's server. Source this file, then call `mariadb_start`; the server is stopped
# and its files removed by `mariadb_stop`, which callers register on EXIT.
#
# After mariadb_start: MARIADB_PORT, MARIADB_SOCKET, MARIADB_URL (root, no password, no db),
# and MARIADB_CA: the PEM of the throwaway CA that signed the server's TLS certificate
# (for host name "localhost"), so TLS settings can be tested for real.
# Extra server options can be passed in MARIADB_EXTRA_OPTS (e.g. a bigger buffer pool).

mariadb_find_server() {
  local bin
  for bin in mariadbd mysqld; do
    if command -v "$bin" >/dev/null 2>&1; then command -v "$bin"; return 0; fi
    if [ -x "/usr/sbin/$bin" ]; then echo "/usr/sbin/$bin"; return 0; fi
  done
  return 1
}

# apt-get as root, once per script run; `policy-rc.d` keeps the package from starting the
# system-wide server we do not use, and is removed again by mariadb_stop if interrupted.
mariadb_apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "error: $* not installed, and only root can install it (apt-get install $*)" >&2
    return 1
  fi
  echo "installing $* with apt-get ..." >&2
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && MARIADB_POLICY_RC=1
  fi
  local rc=0
  if [ -z "${MARIADB_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 && MARIADB_APT_UPDATED=1 || rc=$?
  fi
  [ $rc = 0 ] && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 || rc=$?; }
  mariadb_remove_policy
  return $rc
}

mariadb_remove_policy() {
  if [ -n "${MARIADB_POLICY_RC:-}" ]; then rm -f /usr/sbin/policy-rc.d; MARIADB_POLICY_RC=; fi
  return 0
}

mariadb_ensure_installed() {
  mariadb_find_server >/dev/null || mariadb_apt_install mariadb-server mariadb-client || return 1
  command -v openssl >/dev/null 2>&1 || mariadb_apt_install openssl || return 1
}

mariadb_free_port() {
  local port tries=0
  while [ $tries -lt 200 ]; do
    port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 30000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
    tries=$((tries + 1))
  done
  echo "error: no free TCP port found for the throwaway MariaDB" >&2
  return 1
}

# A CA and a server certificate for "localhost", valid for a day.
mariadb_make_tls() {
  local dir=$1
  (
    cd "$dir" &&
      openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=wc-retention throwaway CA" \
        -keyout ca-key.pem -out ca.pem &&
      openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server-key.pem -out server.csr &&
      printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' >server.ext &&
      openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 1 \
        -extfile server.ext -out server-cert.pem
  ) >"$dir/tls.log" 2>&1 || { echo "error: making TLS certificates failed:" >&2; cat "$dir/tls.log" >&2; return 1; }
}

mariadb_start() {
  mariadb_ensure_installed || return 1
  local install_db
  install_db=$(command -v mariadb-install-db || command -v mysql_install_db) || {
    echo "error: mariadb-install-db not found" >&2; return 1; }

  MARIADB_DIR=$(mktemp -d "${TMPDIR:-/tmp}/wcr-mariadb.XXXXXX")
  MARIADB_SOCKET="$MARIADB_DIR/mysqld.sock"
  mariadb_make_tls "$MARIADB_DIR" || return 1
  MARIADB_CA="$MARIADB_DIR/ca.pem"
  local user_opt=()
  [ "$(id -u)" = 0 ] && user_opt=(--user=root)

  "$install_db" --no-defaults "${user_opt[@]}" --datadir="$MARIADB_DIR/data" \
    --auth-root-authentication-method=normal --skip-test-db >"$MARIADB_DIR/install.log" 2>&1 || {
    echo "error: mariadb-install-db failed; see below" >&2; cat "$MARIADB_DIR/install.log" >&2; return 1; }

  mariadb_launch
}

# Starts the server on the data in $MARIADB_DIR/data (after mariadb_start, or after
# mariadb_shutdown and a change of the data files, as the benchmark does).
mariadb_launch() {
  local server client_admin user_opt=()
  server=$(mariadb_find_server)
  client_admin=$(command -v mariadb-admin || command -v mysqladmin) || {
    echo "error: mariadb-admin not found" >&2; return 1; }
  [ "$(id -u)" = 0 ] && user_opt=(--user=root)
  # The port is free when picked but another process may take it before the server binds:
  # then try another one.
  local attempt i
  for attempt in 1 2 3; do
    # A relaunch keeps its port (clients' URLs name it) unless it was taken meanwhile.
    if [ "$attempt" != 1 ] || [ -z "${MARIADB_PORT:-}" ]; then
      MARIADB_PORT=$(mariadb_free_port) || return 1
    fi
    : >"$MARIADB_DIR/error.log"
    # shellcheck disable=SC2086 # MARIADB_EXTRA_OPTS is a list of options
    "$server" --no-defaults "${user_opt[@]}" --datadir="$MARIADB_DIR/data" \
      --port="$MARIADB_PORT" --bind-address=127.0.0.1 --socket="$MARIADB_SOCKET" \
      --pid-file="$MARIADB_DIR/mysqld.pid" --log-error="$MARIADB_DIR/error.log" \
      --ssl-ca="$MARIADB_DIR/ca.pem" --ssl-cert="$MARIADB_DIR/server-cert.pem" --ssl-key="$MARIADB_DIR/server-key.pem" \
      --max-connections=600 --skip-log-bin ${MARIADB_EXTRA_OPTS:-} >"$MARIADB_DIR/server.out" 2>&1 &
    MARIADB_PID=$!
    for i in $(seq 1 120); do
      if "$client_admin" --no-defaults --socket="$MARIADB_SOCKET" -uroot ping >/dev/null 2>&1; then
        MARIADB_URL="mysql://root@127.0.0.1:$MARIADB_PORT/"
        export MARIADB_PORT MARIADB_SOCKET MARIADB_URL MARIADB_DIR MARIADB_PID MARIADB_CA
        echo "throwaway MariaDB ready on 127.0.0.1:$MARIADB_PORT (data in $MARIADB_DIR)" >&2
        return 0
      fi
      kill -0 "$MARIADB_PID" 2>/dev/null || break
      sleep 0.5
    done
    kill "$MARIADB_PID" 2>/dev/null; wait "$MARIADB_PID" 2>/dev/null
    grep -q "Address already in use" "$MARIADB_DIR/error.log" || break
    echo "port $MARIADB_PORT was taken; trying another" >&2
  done
  echo "error: the throwaway MariaDB did not start; its log:" >&2
  cat "$MARIADB_DIR/error.log" >&2
  return 1
}

# Stops the server and keeps its files (for mariadb_launch).
mariadb_shutdown() {
  if [ -n "${MARIADB_PID:-}" ] && kill -0 "$MARIADB_PID" 2>/dev/null; then
    kill "$MARIADB_PID" 2>/dev/null || true
    wait "$MARIADB_PID" 2>/dev/null || true
  fi
  MARIADB_PID=
}

# Safe under `set -e` (callers' traps run with it): every step tolerates "already gone".
mariadb_stop() {
  mariadb_remove_policy
  if [ -n "${MARIADB_PID:-}" ] && kill -0 "$MARIADB_PID" 2>/dev/null; then
    kill "$MARIADB_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 60); do kill -0 "$MARIADB_PID" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$MARIADB_PID" 2>/dev/null || true
    wait "$MARIADB_PID" 2>/dev/null || true
  fi
  if [ -n "${MARIADB_DIR:-}" ]; then rm -rf "$MARIADB_DIR"; fi
  MARIADB_PID=
  MARIADB_DIR=
  MARIADB_PORT=
}
