#!/usr/bin/env bash
# Start (or stop) N MNIST Lab servers on consecutive loopback ports, sharing one runs, data and drawings dir,
# for a reverse proxy with sticky sessions in front (deploy/nginx.conf or deploy/Caddyfile).
#
#   deploy/replicas.sh start [N] [BASE_PORT]    # default 2 replicas on 8501, 8502, ...
#   deploy/replicas.sh stop
#
# Shared through the environment: MNIST_RUNS_DIR (default ./runs), MNIST_DATA_DIR (./data),
# MNIST_DRAWINGS_DIR (<data>/drawings). Every replica must sign cookies with the same secret, so a sign-in
# started on one replica can be called back on another: put one secret of at least 32 bytes in the file
# $MNIST_COOKIE_SECRET_FILE (default ~/.config/mnist-lab/cookie_secret, created here if missing, mode 0600;
# never commit it). It is passed as server.cookieSecret; with sign-in on, .streamlit/secrets.toml's
# [auth] cookie_secret must hold the same value (Streamlit uses it in preference).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STATE=${MNIST_REPLICAS_STATE:-.replicas}   # pid files and logs (ignored by git)
action=${1:-start}
n=${2:-2}
base=${3:-8501}

stop() {
  for f in "$STATE"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then kill "$pid"; fi
    rm -f "$f"
  done
}

case "$action" in
  stop) stop; exit 0 ;;
  start) ;;
  *) echo "usage: $0 start [N] [BASE_PORT] | stop" >&2; exit 2 ;;
esac

secret_file=${MNIST_COOKIE_SECRET_FILE:-$HOME/.config/mnist-lab/cookie_secret}
if [ ! -s "$secret_file" ]; then
  mkdir -p "$(dirname "$secret_file")"
  (umask 077; "$PY" -c 'import secrets; print(secrets.token_urlsafe(48))' >"$secret_file")
fi
secret=$(tr -d '\n' <"$secret_file")
if [ "${#secret}" -lt 32 ]; then
  echo "$secret_file holds ${#secret} bytes; a cookie secret needs at least 32" >&2
  exit 1
fi

export MNIST_RUNS_DIR=${MNIST_RUNS_DIR:-$PWD/runs}
export MNIST_DATA_DIR=${MNIST_DATA_DIR:-$PWD/data}
export MNIST_DRAWINGS_DIR=${MNIST_DRAWINGS_DIR:-$MNIST_DATA_DIR/drawings}
export STREAMLIT_SERVER_COOKIE_SECRET=$secret
mkdir -p "$STATE" "$MNIST_RUNS_DIR"
"$PY" -m mnistcore data >/dev/null   # provision once, before the replicas race to do it
for i in $(seq 0 $((n - 1))); do
  port=$((base + i))
  "$PY" -m streamlit run app.py --server.address 127.0.0.1 --server.port "$port" --server.headless true \
    >"$STATE/replica-$port.log" 2>&1 &
  echo $! >"$STATE/replica-$port.pid"
  echo "replica $((i + 1))/$n: http://127.0.0.1:$port (pid $!, log $STATE/replica-$port.log)"
done
