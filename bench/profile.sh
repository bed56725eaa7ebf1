#!/usr/bin/env bash
# Where `rohimaya upload` spends its CPU: one upload of a SIZE text file (default 256M)
# to a fresh devstack under `perf record`, then the top symbols, and the timestamps of
# the progress lines (the first one marks the end of the hashing pass). Run it inside a
# D-Bus session with an unlocked gnome-keyring, e.g.
#
#   dbus-run-session -- bash -c 'printf "\n" | XDG_DATA_HOME=$(mktemp -d) \
#     gnome-keyring-daemon --unlock --components=secrets >/dev/null; \
#     bash bench/profile.sh /root/.cache/rohimaya-target-bench/release/rohimaya 256M'
set -euo pipefail
BIN="${1:?usage: profile.sh ROHIMAYA_BINARY [SIZE]}"
SIZE="${2:-256M}"
W=$(mktemp -d /tmp/rohimaya-profile-XXXX)
export ROHIMAYA_CONFIG_DIR="$W/config" ROHIMAYA_DATA_DIR="$W/data" RUST_LOG="warn,s3s=off"
"$BIN" --profile prof devstack --save-profile --data "$W/devstack" --job-seconds 1 \
  > "$W/ready" 2> "$W/devstack.log" &
DS=$!
trap 'kill $DS 2>/dev/null; wait $DS 2>/dev/null; rm -rf "$W"' EXIT
until [ -s "$W/ready" ]; do sleep 0.2; done
echo "a long enough password 123" | "$BIN" --profile prof signup --email p@example.com \
  --password-stdin > /dev/null
{ base64 -w 99 /dev/urandom || true; } | head -c "$SIZE" > "$W/Profile Book.txt"
START=$(date +%s.%N | cut -c1-14)
perf record -F 999 -g -o "$W/perf.data" -- "$BIN" --profile prof upload "$W/Profile Book.txt" \
  2> >(while IFS= read -r l; do printf '%s %s\n' "$(date +%s.%N | cut -c1-14)" "$l"; done > "$W/progress.txt") \
  > /dev/null
sleep 0.5
echo "== started $START; progress lines (epoch s, first and last 3)"; head -3 "$W/progress.txt"; tail -3 "$W/progress.txt"
echo "== top symbols (self time)"
perf report -i "$W/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null \
  | grep -v '^#' | grep '%' | head -25
