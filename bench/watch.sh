#!/usr/bin/env bash
# The watched-folder benchmark: latency from the last write to upload start over 100
# files (default 3 s stability window), then a tree of 10,000 files: start-up scan time,
# and CPU time and RSS while the watcher idles over it for 60 s. Everything runs in one
# process against an in-process devstack (crates/core/examples/watch_bench.rs).
# Environment: WATCH_BENCH_WINDOW_MS (3000), WATCH_BENCH_TREE (10000),
# WATCH_BENCH_IDLE_S (60), PROFILE (release; "dev" for a quick debug run).
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-release}"
cargo build --profile "$profile" -p rohimaya-core --example watch_bench
dir="${CARGO_TARGET_DIR:-target}/$([ "$profile" = dev ] && echo debug || echo "$profile")/examples"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$dir/watch_bench"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
