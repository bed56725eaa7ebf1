#!/usr/bin/env bash
# Idle wake-ups of the core: what the app starts (devstack in-process, a signed-in Client
# with its queues, job feed and watcher, one watched folder), idle for 60 s; prints the
# voluntary context switches per thread and the CPU time (crates/core/examples/idle_probe.rs).
# Environment: IDLE_PROBE_SECS (60), IDLE_PROBE_SETTLE_SECS (20), PROFILE (release; "dev"
# for a quick debug build). The session goes to the OS keyring: without a Secret Service
# on the session bus, one is started for the run (dbus-run-session + gnome-keyring).
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-release}"
cargo build --profile "$profile" -p rohimaya-core --example idle_probe
dir="${CARGO_TARGET_DIR:-target}/$([ "$profile" = dev ] && echo debug || echo "$profile")/examples"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ]; then
  "$dir/idle_probe"
else
  dbus-run-session -- bash -c 'printf "\n" | XDG_DATA_HOME=$(mktemp -d) gnome-keyring-daemon --unlock --components=secrets >/dev/null; "$0"' "$dir/idle_probe"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
