#!/usr/bin/env bash
# The 200 MiB kill test of issue 4 (crates/cli/tests/upload_crash.rs), release build,
# in a D-Bus session with an unlocked gnome-keyring. It kills `rohimaya upload` with
# SIGKILL ten times at random points and prints the bytes re-sent (measured at a fault
# proxy in front of the store); this script keeps that line in bench/out/crash.txt.
#
#   bash bench/crash.sh [RUNS]     # RUNS times (default 1), one line per run
#
# BENCH_FROM_HEAD=1 builds the committed HEAD (a `git archive` copy in /tmp) instead of
# the work tree, e.g. while the work tree is mid-edit; results then name HEAD's commit.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH="$PWD/bench"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/rohimaya-target-bench}"
if [ "${BENCH_FROM_HEAD:-0}" = 1 ]; then
  src="/tmp/rohimaya-bench-src"
  rm -rf "$src" && mkdir -p "$src"
  git archive HEAD | tar -x -C "$src"
  echo "building HEAD $(git rev-parse --short HEAD) from $src" >&2
  cd "$src"
fi
runs="${1:-1}"
mkdir -p "$BENCH/out"
cargo test --release -p rohimaya-cli --test upload_crash --no-run
for i in $(seq 1 "$runs"); do
  dbus-run-session -- bash -c '
    printf "\n" | XDG_DATA_HOME=$(mktemp -d) gnome-keyring-daemon --unlock --components=secrets >/dev/null
    cargo test --release -p rohimaya-cli --test upload_crash -- --nocapture' \
    2>&1 | tee "$BENCH/out/crash-$i.log" | grep -E "crash test:|test result:|panicked" \
    | tee -a "$BENCH/out/crash.txt"
done
