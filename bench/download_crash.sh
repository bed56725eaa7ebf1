#!/usr/bin/env bash
# The 200 MiB download kill test of issue 5 (crates/cli/tests/download_resume.rs,
# `a_200_mib_download_killed_four_times_resumes_byte_exact`, #[ignore]d in the debug
# suite), release build, in a D-Bus session with an unlocked gnome-keyring. It kills
# `rohimaya download` with SIGKILL four times mid-file and prints where each run resumed
# and the bytes fetched again per kill (measured at a fault proxy in front of the store);
# this script keeps that line in bench/out/download_crash.txt.
#
#   bash bench/download_crash.sh [RUNS]     # RUNS times (default 1), one line per run
#
# BENCH_FROM_HEAD=1 builds the committed HEAD (a `git archive` copy in /tmp) instead of
# the work tree. CARGO_TARGET_DIR defaults to the benchmarks' target dir.
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
cargo test --release -p rohimaya-cli --test download_resume --no-run
for i in $(seq 1 "$runs"); do
  dbus-run-session -- bash -c '
    printf "\n" | XDG_DATA_HOME=$(mktemp -d) gnome-keyring-daemon --unlock --components=secrets >/dev/null
    cargo test --release -p rohimaya-cli --test download_resume -- --ignored --nocapture \
      a_200_mib_download_killed_four_times_resumes_byte_exact' \
    2>&1 | tee "$BENCH/out/download-crash-$i.log" \
    | grep -E "download crash test|test result:|panicked" \
    | tee -a "$BENCH/out/download_crash.txt"
done
