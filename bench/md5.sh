#!/usr/bin/env bash
# MD5 speed on one core: rohimaya-md5 against the md-5 crate (same buffer, same run), and
# OpenSSL's `openssl speed -evp md5` and coreutils' `md5sum` (over a page-cached file) as
# outside peers. Every upload part and every download is checked with MD5, so this is most
# of a transfer's CPU. Environment: MD5_MIB (256), MD5_ROUNDS (5).
set -euo pipefail
cd "$(dirname "$0")/.."
mib="${MD5_MIB:-256}"
rounds="${MD5_ROUNDS:-5}"
cargo build --release -p rohimaya-md5 --example md5_speed
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"${CARGO_TARGET_DIR:-target}/release/examples/md5_speed" "$mib" "$rounds"
if command -v openssl >/dev/null; then
  # Bytes per second over 1 MiB blocks, the last column of the last line (kB = 1000 B).
  openssl speed -seconds 3 -bytes 1048576 -evp md5 2>/dev/null |
    awk 'END { v = $NF; sub(/k$/, "", v); printf "{\"openssl_mb_s\": %.0f}\n", v / 1000 }'
fi
if command -v md5sum >/dev/null; then
  f="$(mktemp)"
  trap 'rm -f "$f"' EXIT
  head -c "$((mib << 20))" /dev/urandom >"$f"
  md5sum "$f" >/dev/null # into the page cache
  best=""
  for _ in $(seq "$rounds"); do
    s=$(date +%s.%N); md5sum "$f" >/dev/null; e=$(date +%s.%N)
    best="$best $(echo "$mib $s $e" | awk '{ printf "%.0f", $1 * 1.048576 / ($3 - $2) }')"
  done
  echo "$best" | tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{ v[NR] = $1 } END { printf "{\"md5sum_mb_s\": %d}\n", v[int((NR + 1) / 2)] }'
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
