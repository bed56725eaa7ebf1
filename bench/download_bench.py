#!/usr/bin/env python3
"""Download benchmark (issue 5): rohimaya's download engine beside curl, the AWS CLI and
rclone, on one object in the embedded S3 store of an in-process devstack, on loopback.

Python 3 standard library only. The engine runs through the example binary
`crates/core/examples/download_bench.rs` (the `rohimaya download` command comes later);
build it first:

    CARGO_TARGET_DIR=/root/.cache/rohimaya/dl cargo build --release -p rohimaya-core \\
        --example download_bench
    python3 bench/download_bench.py --bin /root/.cache/rohimaya/dl/release/examples/download_bench

What it does:
1. `download_bench serve DIR SIZE` starts a devstack, finishes a job and replaces its
   book with SIZE random bytes; it prints the API URL, a token, a presigned URL and the
   S3 keys;
2. N rounds, each running every tool once in a fixed order under `/usr/bin/time -v`,
   writing into a fresh file under the work dir (deleted after each run, `sync` and a
   drop of the file outside the timing):
     - rohimaya-Nc: `download_bench get ...` with N ranged connections (16 MiB chunks),
                    the whole download timed (API call for the URL, GETs, MD5 check,
                    fsync, rename);
     - curl:        `curl -o FILE URL` on the presigned URL (one stream);
     - aws:         `aws s3 cp s3://bucket/key FILE` (multipart_chunksize 16MB,
                    max_concurrent_requests 4: 4 ranged GETs);
     - rclone:      `rclone copyto bench:bucket/key FILE` (--multi-thread-streams 4);
   every result's size (and, for rohimaya and curl, MD5) is checked; after each tool, a
   `sync` is timed on its own: how long the file then takes to reach the disk (the peers
   leave it in the page cache, rohimaya has flushed it);
3. prints a markdown table of medians (MB/s = 10^6 bytes per second of wall time, peak
   RSS, CPU seconds of the tool and of the S3 server, and MB/s to disk = size / (wall +
   that sync)) and writes results.json into --out.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

MIB = 1024 * 1024
GIB = 1024 * MIB


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def parse_time_v(path):
    text = open(path).read()

    def num(label):
        m = re.search(re.escape(label) + r":\s*([0-9.]+)", text)
        return float(m.group(1)) if m else float("nan")

    return {
        "user_s": num("User time (seconds)"),
        "sys_s": num("System time (seconds)"),
        "max_rss_kib": num("Maximum resident set size (kbytes)"),
    }


def cpu_s(pid):
    """User + system CPU seconds of process `pid` so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def md5_of(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MIB)
            if not b:
                return h.hexdigest()
            h.update(b)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default="/root/.cache/rohimaya/dl/release/examples/download_bench")
    p.add_argument("--size", type=int, default=GIB)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--connections", default="1,4,8",
                   help="rohimaya variants: ranged connections per download; a trailing e (4e) flushes only before the rename, a trailing n (e.g. 4n) "
                        "skips the flush before the rename")
    p.add_argument("--tools", default="curl,aws,rclone")
    p.add_argument("--tmp", default="/tmp")
    p.add_argument("--out", default="bench/out")
    args = p.parse_args()

    work = tempfile.mkdtemp(prefix="rohimaya-dl-bench-", dir=args.tmp)
    serve = subprocess.Popen([args.bin, "serve", os.path.join(work, "devstack"),
                              str(args.size)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    results = []
    try:
        ds = json.loads(serve.stdout.readline())
        log(f"devstack ready, object {ds['size']} bytes, ETag {ds['etag']}")
        lib = os.path.join(work, "Library")
        os.makedirs(lib)
        aws_env = dict(os.environ)
        aws_dir = os.path.join(work, "aws")
        os.makedirs(aws_dir)
        aws_env.update({
            "AWS_CONFIG_FILE": os.path.join(aws_dir, "config"),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(aws_dir, "credentials"),
            "AWS_ACCESS_KEY_ID": ds["access_key"],
            "AWS_SECRET_ACCESS_KEY": ds["secret_key"],
            "AWS_DEFAULT_REGION": "us-east-1",
        })
        for key, value in [("default.s3.multipart_chunksize", "16MB"),
                           ("default.s3.max_concurrent_requests", "4"),
                           ("default.s3.addressing_style", "path"),
                           ("default.region", "us-east-1")]:
            subprocess.run(["aws", "configure", "set", key, value], env=aws_env, check=True)
        rclone_env = dict(os.environ)
        rclone_env.update({
            "RCLONE_CONFIG": os.path.join(work, "rclone.conf"),
            "RCLONE_CONFIG_BENCH_TYPE": "s3",
            "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
            "RCLONE_CONFIG_BENCH_ENDPOINT": ds["s3_url"],
            "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": ds["access_key"],
            "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": ds["secret_key"],
            "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
            "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
        })
        open(rclone_env["RCLONE_CONFIG"], "w").close()
        etag = ds["etag"].strip('"')
        tools = []
        for variant in [v for v in args.connections.split(",") if v]:
            # "4" = 4 connections (defaults: flushed while written and before the rename);
            # "4n" = without any flush; "4e" = flushed only before the rename.
            c = variant.rstrip("ne")
            extra = {"n": ["nosync"], "e": ["endsync"]}.get(variant[-1], [])
            label = {"n": "-nosync", "e": "-endsync"}.get(variant[-1], "")
            tools.append((f"rohimaya-{c}c{label}", lambda dest, c=c, extra=extra: (
                [args.bin, "get", ds["api_url"], ds["token"], ds["job_id"], lib, dest, c, "16",
                 *extra], None)))
        wanted = args.tools.split(",")
        if "curl" in wanted:
            tools.append(("curl", lambda dest: (["curl", "-sS", "-f", "-o", dest, ds["url"]], None)))
        if "aws" in wanted:
            tools.append(("aws", lambda dest: (
                ["aws", "--endpoint-url", ds["s3_url"], "s3", "cp",
                 f"s3://{ds['bucket']}/{ds['key']}", dest, "--only-show-errors"], aws_env)))
        if "rclone" in wanted:
            tools.append(("rclone", lambda dest: (
                ["rclone", "copyto", f"bench:{ds['bucket']}/{ds['key']}", dest,
                 "--multi-thread-streams", "4", "--multi-thread-cutoff", "16M"], rclone_env)))
        seq = 0
        for run in range(args.runs):
            for name, make in tools:
                seq += 1
                dest = os.path.join(lib, f"{name}-{seq}.wav")
                cmd, env = make(dest)
                tv = os.path.join(work, f"time-{seq}.txt")
                subprocess.run(["sync"])
                server0 = cpu_s(serve.pid)
                t0 = time.monotonic()
                proc = subprocess.run(["/usr/bin/time", "-v", "-o", tv, *cmd], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                wall = time.monotonic() - t0
                # How long the file then takes to reach the disk: the peers leave it in
                # the page cache; rohimaya has flushed it already (unless -nosync).
                t1 = time.monotonic()
                subprocess.run(["sync"])
                sync_s = time.monotonic() - t1
                r = {"tool": name, "run": run, "wall_s": wall, **parse_time_v(tv),
                     "server_cpu_s": cpu_s(serve.pid) - server0, "sync_s": sync_s,
                     "ok": proc.returncode == 0}
                size = os.path.getsize(dest) if os.path.exists(dest) else -1
                r["size_ok"] = size == args.size
                if name.startswith("rohimaya") or name == "curl":
                    r["md5_ok"] = size == args.size and md5_of(dest) == etag
                r["mb_s"] = args.size / 1e6 / wall
                r["durable_mb_s"] = args.size / 1e6 / (wall + sync_s)
                if not r["ok"]:
                    log(name, "FAILED", proc.stderr[-1500:])
                log(f"{name} run {run}: {r['mb_s']:.0f} MB/s, RSS {r['max_rss_kib'] / 1024:.0f} MiB, "
                    f"then sync {sync_s:.2f} s, cpu {r['user_s'] + r['sys_s']:.1f} s (server {r['server_cpu_s']:.1f} s), ok={r['ok']} size_ok={r['size_ok']}")
                results.append(r)
                if os.path.exists(dest):
                    os.remove(dest)
                time.sleep(1)
    finally:
        serve.stdin.close()
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
        shutil.rmtree(work, ignore_errors=True)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "downloads.json"), "w") as f:
        json.dump(results, f, indent=1)
    names = []
    for r in results:
        if r["tool"] not in names:
            names.append(r["tool"])
    med = {n: statistics.median([r["mb_s"] for r in results if r["tool"] == n and r["ok"]] or [0])
           for n in names}
    best_peer = max([med[n] for n in names if not n.startswith("rohimaya")] or [0])
    dmed = {n: statistics.median([r["durable_mb_s"] for r in results if r["tool"] == n and r["ok"]] or [0])
            for n in names}
    best_durable = max([dmed[n] for n in names if not n.startswith("rohimaya")] or [0])
    print(f"| tool | MB/s (median of {args.runs}) | runs | x fastest peer | peak RSS MiB | CPU s | server CPU s | MB/s to disk (+ sync) | x fastest peer to disk |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for n in names:
        rs = [r for r in results if r["tool"] == n]
        runs = ", ".join(f"{r['mb_s']:.0f}" for r in rs)
        rss = statistics.median([r["max_rss_kib"] for r in rs]) / 1024
        cpu = statistics.median([r["user_s"] + r["sys_s"] for r in rs])
        server = statistics.median([r["server_cpu_s"] for r in rs])
        ratio = f"{med[n] / best_peer:.2f}" if best_peer else "-"
        ok = all(r["ok"] and r["size_ok"] and r.get("md5_ok", True) for r in rs)
        print(f"| {n}{'' if ok else ' (FAILED)'} | {med[n]:.0f} | {runs} | {ratio} | {rss:.0f} | {cpu:.1f} | {server:.1f} | {dmed[n]:.0f} | {dmed[n] / best_durable if best_durable else 0:.2f} |")


if __name__ == "__main__":
    main()
