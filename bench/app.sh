#!/usr/bin/env bash
# Desktop app benchmark (issue 7): builds the release app with the Tauri CLI (front end
# embedded), then runs bench/app_bench.py on a virtual display (Xvfb, 1280x800x24) in a
# D-Bus session of its own with an unlocked gnome-keyring (the app keeps its session in
# the OS keyring). Arguments go to app_bench.py; see `python3 bench/app_bench.py -h`.
#
#   bash bench/app.sh                              # launch x7 each kind, idle 60 s, frames
#   bash bench/app.sh --phases launch --runs 10    # startup only
#   APP_BENCH_NO_BUILD=1 bash bench/app.sh ...     # reuse the last release build
#
# Needs: cargo, npm (npm ci done in the root and in ui/), xvfb-run, dbus-run-session,
# gnome-keyring-daemon, tauri-driver + WebKitWebDriver (scripts/test installs them),
# python3. Results: bench/out/app.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rohimaya/target}"
export PATH="$HOME/.cache/rohimaya/tools/bin:$HOME/.cargo/bin:$PATH"
if [ "${APP_BENCH_NO_BUILD:-0}" != 1 ]; then
  # The Tauri CLI build embeds ui/dist; a plain `cargo build` would load the dev server.
  npx tauri build --no-bundle
fi
APP="$CARGO_TARGET_DIR/release/rohimaya-desktop"
for tool in xvfb-run dbus-run-session gnome-keyring-daemon tauri-driver WebKitWebDriver; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done
[ -x "$APP" ] || { echo "no release build at $APP" >&2; exit 2; }
keyring_home="$(mktemp -d)"
trap 'rm -rf "$keyring_home"' EXIT
KEYRING_HOME="$keyring_home" xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- bash -c '
  printf "\n" | XDG_DATA_HOME="$KEYRING_HOME" gnome-keyring-daemon --unlock --components=secrets >/dev/null
  exec python3 bench/app_bench.py --app "$0" --tauri-driver "$(command -v tauri-driver)" "$@"' "$APP" "$@"
