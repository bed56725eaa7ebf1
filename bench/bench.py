#!/usr/bin/env python3
"""Upload benchmark: `rohimaya upload` beside curl, the AWS CLI and rclone, against the
S3 store of `rohimaya devstack` on loopback.

Python 3 standard library only. Run it through bench/run.sh, which builds the release
CLI and provides the D-Bus session with an unlocked gnome-keyring that `rohimaya signup`
needs to keep its session. Directly (inside such a session):

    python3 bench/bench.py --rohimaya /root/.cache/rohimaya-target-bench/release/rohimaya \
        --runs 3 --sizes 256M,1G --single-sizes 63M --rss-sizes 4G --rss-runs 1

What it does, in one run, against one devstack:

1. writes text files of real content (base64 of /dev/urandom, 100-character lines; never
   sparse) in a fresh work dir under /tmp;
2. starts `rohimaya devstack --job-seconds 1`, signs up a user through the CLI (session
   in the keyring) and a second one through GoTrue's `/signup` for curl's presigned URLs;
3. for each size, N rounds; each round runs every tool once, in a fixed order
   (interleaved: A B C, A B C, ...), each under `/usr/bin/time -v`:
     - rohimaya:   `rohimaya upload FILE --force` at its defaults (single PUT below
                   64 MiB, else 16 MiB parts x 4 in flight; in the single-PUT rounds
                   with `--multipart-threshold SIZE+1`, so every size goes in one PUT),
                   the whole command timed (session refresh, hashing, upload,
                   verification, POST /jobs);
     - curl:       `curl --upload-file FILE` on a URL from `POST /uploads/presign` with
                   the returned headers. Two figures from the same run: "curl" is the
                   transfer alone (the PUT); "curl-pipeline" is everything a signed URL
                   needs before it: `md5sum FILE` (the Content-MD5) + the presign call +
                   the PUT, wall times added;
     - aws:        `aws s3 cp` with multipart_chunksize 16MB, max_concurrent_requests 4;
     - rclone:     `rclone copyto` with --s3-chunk-size 16M --s3-upload-concurrency 4
                   --s3-upload-cutoff 0;
   after each upload the stored object's size is checked in the store's directory, the
   object is deleted, the narration job rohimaya created is cancelled (so the simulator
   does not read the manuscript during the next measurement) and `sync` runs, all
   outside the timing;
4. writes results.json (every run) and results.md (median tables) into --out.

MB/s are 10^6 bytes per second of wall time. CPU is user+sys of the client process.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

MIB = 1024 * 1024
GIB = 1024 * MIB


def parse_size(s):
    s = s.strip().upper()
    mult = {"K": 1024, "M": MIB, "G": GIB}
    if s[-1] in mult:
        return int(float(s[:-1]) * mult[s[-1]])
    return int(s)


def size_label(n):
    if n % GIB == 0:
        return f"{n // GIB} GiB"
    if n % MIB == 0:
        return f"{n // MIB} MiB"
    return f"{n} B"


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def write_text_file(path, size):
    """Real content: base64 of random bytes in 100-character lines (valid UTF-8 text)."""
    log(f"writing {path} ({size_label(size)})")
    cmd = f"base64 -w 99 /dev/urandom | head -c {size} > '{path}'"
    subprocess.run(["bash", "-c", cmd], check=True)
    assert os.path.getsize(path) == size


def md5_b64(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MIB)
            if not b:
                break
            h.update(b)
    return base64.b64encode(h.digest()).decode()


def http_json(method, url, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def proc_cpu_s(pid):
    """utime + stime of one process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_time_v(path):
    """User, sys seconds and max RSS (KiB) from GNU time -v output."""
    text = open(path).read()

    def num(label):
        m = re.search(re.escape(label) + r":\s*([0-9.]+)", text)
        return float(m.group(1)) if m else float("nan")

    return {
        "user_s": num("User time (seconds)"),
        "sys_s": num("System time (seconds)"),
        "max_rss_kib": num("Maximum resident set size (kbytes)"),
        "exit_status": num("Exit status"),
    }


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = os.path.abspath(args.rohimaya)
        self.work = tempfile.mkdtemp(prefix="rohimaya-bench-", dir=args.tmp)
        self.out = os.path.abspath(args.out)
        os.makedirs(self.out, exist_ok=True)
        self.env = dict(os.environ)
        self.env.update(
            {
                "ROHIMAYA_CONFIG_DIR": os.path.join(self.work, "config"),
                "ROHIMAYA_DATA_DIR": os.path.join(self.work, "data"),
                "RUST_LOG": "warn,s3s=off",
            }
        )
        for k in ("ROHIMAYA_SUPABASE_URL", "ROHIMAYA_SUPABASE_ANON_KEY",
                  "ROHIMAYA_API_URL", "ROHIMAYA_PROFILE"):
            self.env.pop(k, None)
        self.profile = "bench"
        self.devstack = None
        self.results = []
        self.seq = 0

    # -- setup ------------------------------------------------------------------------

    def rohimaya(self, *args, **kw):
        return [self.bin, "--profile", self.profile, *args]

    def start_devstack(self):
        self.store_dir = os.path.join(self.work, "devstack")
        cmd = self.rohimaya("devstack", "--save-profile", "--data", self.store_dir,
                            "--job-seconds", "1")
        log("starting", " ".join(cmd))
        self.devstack = subprocess.Popen(
            cmd, env=self.env, stdout=subprocess.PIPE,
            stderr=open(os.path.join(self.work, "devstack.log"), "w"),
            start_new_session=True)
        line = self.devstack.stdout.readline()
        self.ds = json.loads(line)
        log("devstack ready:", {k: v for k, v in self.ds.items() if "key" not in k})

    def signup(self):
        p = subprocess.run(self.rohimaya("signup", "--email", "bench@example.com",
                                         "--password-stdin"),
                           input=b"a long enough password 123\n", env=self.env,
                           capture_output=True)
        if p.returncode != 0:
            raise SystemExit(f"rohimaya signup failed: {p.stdout!r} {p.stderr!r}")
        w = subprocess.run(self.rohimaya("whoami", "--json"), env=self.env,
                           capture_output=True)
        who = json.loads(w.stdout)
        if not who.get("remembered"):
            raise SystemExit(f"the session is not in the keyring: {who}")
        # A second account for curl's presigned URLs, straight through GoTrue.
        self.curl_password = "another long password 456"
        http_json("POST", self.ds["supabase_url"] + "/auth/v1/signup",
                  {"email": "curl@example.com", "password": self.curl_password},
                  {"apikey": self.ds["anon_key"]})

    def curl_token(self):
        s = http_json("POST",
                      self.ds["supabase_url"] + "/auth/v1/token?grant_type=password",
                      {"email": "curl@example.com", "password": self.curl_password},
                      {"apikey": self.ds["anon_key"]})
        return s["access_token"]

    def setup_peers(self):
        aws_dir = os.path.join(self.work, "aws")
        os.makedirs(aws_dir)
        self.aws_env = dict(os.environ)
        self.aws_env.update(
            {
                "AWS_CONFIG_FILE": os.path.join(aws_dir, "config"),
                "AWS_SHARED_CREDENTIALS_FILE": os.path.join(aws_dir, "credentials"),
                "AWS_ACCESS_KEY_ID": self.ds["s3_access_key"],
                "AWS_SECRET_ACCESS_KEY": self.ds["s3_secret_key"],
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        )
        for key, value in [
            ("default.s3.multipart_chunksize", "16MB"),
            ("default.s3.max_concurrent_requests", "4"),
            ("default.s3.addressing_style", "path"),
            ("default.region", "us-east-1"),
        ]:
            subprocess.run(["aws", "configure", "set", key, value], env=self.aws_env,
                           check=True)
        self.rclone_env = dict(os.environ)
        self.rclone_env.update(
            {
                "RCLONE_CONFIG": os.path.join(self.work, "rclone.conf"),
                "RCLONE_CONFIG_BENCH_TYPE": "s3",
                "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
                "RCLONE_CONFIG_BENCH_ENDPOINT": self.ds["s3_url"],
                "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": self.ds["s3_access_key"],
                "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": self.ds["s3_secret_key"],
                "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
                "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
            }
        )
        open(self.rclone_env["RCLONE_CONFIG"], "w").close()

    # -- one timed command --------------------------------------------------------------

    def timed(self, tool, size, cmd, env, stdin=None):
        self.seq += 1
        tv = os.path.join(self.work, f"time-{self.seq}.txt")
        full = ["/usr/bin/time", "-v", "-o", tv, *cmd]
        server0 = proc_cpu_s(self.devstack.pid)
        t0 = time.monotonic()
        first_progress = None
        p = subprocess.Popen(full, env=env, stdin=subprocess.PIPE if stdin else
                             subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        if stdin:
            p.stdin.write(stdin)
            p.stdin.close()
        # rohimaya prints progress lines on stderr: the first marks the end of the
        # hashing pass (enqueue) and the start of the upload.
        err_lines = []
        for line in p.stderr:
            if first_progress is None and re.match(rb"#\d+ \w+ +[0-9.]+%", line):
                first_progress = time.monotonic() - t0
            if len(err_lines) < 400:
                err_lines.append(line)
        out = p.stdout.read()
        p.wait()
        wall = time.monotonic() - t0
        r = {"tool": tool, "size": size, "wall_s": wall, **parse_time_v(tv)}
        # The S3 server's CPU for this transfer (it shares the 2 cores with the client).
        r["server_cpu_s_per_gib"] = (proc_cpu_s(self.devstack.pid) - server0) / (size / GIB)
        if first_progress is not None:
            r["first_progress_s"] = first_progress
        r["ok"] = p.returncode == 0
        if not r["ok"]:
            log(f"{tool} FAILED ({p.returncode}): {out[-2000:]!r} "
                f"{b''.join(err_lines)[-2000:]!r}")
        r["mb_s"] = size / 1e6 / wall
        r["cpu_s_per_gib"] = (r["user_s"] + r["sys_s"]) / (size / GIB)
        r["_stdout"] = out.decode(errors="replace")
        return r

    # -- the tools ----------------------------------------------------------------------

    def run_rohimaya(self, path, size, single=False):
        extra = ["--multipart-threshold", str(size + 1)] if single else []
        r = self.timed("rohimaya", size,
                       self.rohimaya("upload", path, "--force", *extra), self.env)
        m = re.search(r"-> job (\S+)", r.pop("_stdout"))
        if m:
            # Keep the simulator from reading the manuscript during the next runs.
            subprocess.run(self.rohimaya("jobs", "cancel", m.group(1), "--json"),
                           env=self.env, capture_output=True)
        return r

    def run_curl(self, path, size, md5):
        """The PUT alone ("curl"), plus what the whole pipeline took: md5sum of the file
        (coreutils, timed like the others), the presign call, the PUT."""
        m = self.timed("md5sum", size, ["md5sum", path], os.environ)
        md5_hex = m.pop("_stdout").split()[0]
        md5 = base64.b64encode(bytes.fromhex(md5_hex)).decode()
        token = self.curl_token()
        t0 = time.monotonic()
        pre = http_json(
            "POST", self.ds["api_url"] + "/uploads/presign",
            {"filename": os.path.basename(path), "content_type": "text/plain",
             "size": size, "content_md5": md5},
            {"Authorization": "Bearer " + token})
        cmd = ["curl", "-sS", "--fail", "--upload-file", path, "-o", "/dev/null"]
        for k, v in pre["headers"].items():
            cmd += ["-H", f"{k}: {v}"]
        if self.args.curl_no_expect:
            cmd += ["-H", "Expect:"]
        cmd.append(pre["url"])
        presign_s = time.monotonic() - t0
        r = self.timed("curl", size, cmd, os.environ)
        r.pop("_stdout")
        wall = m["wall_s"] + presign_s + r["wall_s"]
        cpu = m["user_s"] + m["sys_s"] + r["user_s"] + r["sys_s"]
        r["pipeline"] = {
            "tool": "curl-pipeline", "size": size, "wall_s": wall,
            "md5sum_s": m["wall_s"], "presign_s": presign_s,
            "user_s": m["user_s"] + r["user_s"], "sys_s": m["sys_s"] + r["sys_s"],
            "max_rss_kib": max(m["max_rss_kib"], r["max_rss_kib"]),
            "ok": r["ok"] and m["ok"], "mb_s": size / 1e6 / wall,
            "cpu_s_per_gib": cpu / (size / GIB),
        }
        return r

    def run_aws(self, path, size):
        key = f"s3://{self.ds['manuscripts_bucket']}/bench/aws-{self.seq}.txt"
        r = self.timed("aws", size,
                       ["aws", "--endpoint-url", self.ds["s3_url"], "s3", "cp", path, key,
                        "--only-show-errors"], self.aws_env)
        r.pop("_stdout")
        return r

    def run_rclone(self, path, size):
        key = f"bench:{self.ds['manuscripts_bucket']}/bench/rclone-{self.seq}.txt"
        r = self.timed("rclone", size,
                       ["rclone", "copyto", path, key, "--s3-chunk-size", "16M",
                        "--s3-upload-concurrency", "4", "--s3-upload-cutoff", "0",
                        "--s3-no-check-bucket"], self.rclone_env)
        r.pop("_stdout")
        return r

    # -- store housekeeping -----------------------------------------------------------

    def stored_objects(self):
        """Regular files under the manuscripts bucket's directory (the store keeps an
        object as a file at {data}/s3/{bucket}/{key}), skipping the store's internals."""
        root = os.path.join(self.store_dir, "s3", self.ds["manuscripts_bucket"])
        found = []
        for d, _, files in os.walk(root):
            for f in files:
                found.append(os.path.join(d, f))
        return root, found

    def check_and_clean(self, r, size):
        root, files = self.stored_objects()
        sizes = [os.path.getsize(f) for f in files]
        r["stored_ok"] = size in sizes
        if not r["stored_ok"]:
            log(f"{r['tool']}: no object of {size} bytes in the store: {files} {sizes}")
        for name in os.listdir(root):
            p = os.path.join(root, name)
            if os.path.isdir(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.unlink(p)
        subprocess.run(["sync"])
        time.sleep(self.args.pause)

    # -- the run -------------------------------------------------------------------------

    def round_robin(self, label, path, size, tools, runs, md5=None):
        for i in range(runs):
            for tool in tools:
                if tool == "rohimaya":
                    r = self.run_rohimaya(path, size, single=label == "single")
                elif tool == "curl":
                    r = self.run_curl(path, size, md5)
                elif tool == "aws":
                    r = self.run_aws(path, size)
                elif tool == "rclone":
                    r = self.run_rclone(path, size)
                self.check_and_clean(r, size)
                r["bench"] = label
                r["round"] = i + 1
                self.results.append(r)
                pipe = r.pop("pipeline", None)
                if pipe:
                    pipe.update(bench=label, round=i + 1, stored_ok=r["stored_ok"])
                    self.results.append(pipe)
                    log(f"{label} {size_label(size)} round {i + 1} curl-pipeline: "
                        f"{pipe['wall_s']:.2f} s {pipe['mb_s']:.1f} MB/s (md5sum "
                        f"{pipe['md5sum_s']:.2f} s, presign {pipe['presign_s']:.2f} s)")
                log(f"{label} {size_label(size)} round {i + 1} {tool}: "
                    f"{r['wall_s']:.2f} s {r['mb_s']:.1f} MB/s "
                    f"rss {r['max_rss_kib'] / 1024:.1f} MiB "
                    f"cpu {r['user_s'] + r['sys_s']:.2f} s"
                    + (f" first progress {r['first_progress_s']:.2f} s"
                       if "first_progress_s" in r else "")
                    + ("" if r["ok"] and r["stored_ok"] else " FAILED"))
                self.save()

    def save(self):
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump({"meta": self.meta, "runs": self.results}, f, indent=1)

    def main(self):
        a = self.args
        self.meta = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                     "argv": sys.argv, "loadavg_start": open("/proc/loadavg").read().split()[:3]}
        self.start_devstack()
        self.signup()
        self.setup_peers()
        files = {}
        for s in sorted(set(a.single_sizes + a.sizes + a.rss_sizes)):
            path = os.path.join(self.work, f"Bench Book {size_label(s).replace(' ', '')}.txt")
            write_text_file(path, s)
            files[s] = path
        subprocess.run(["sync"])
        for s in a.single_sizes:
            md5 = None  # run_curl computes it (timed, for curl-pipeline)
            self.round_robin("single", files[s], s, ["rohimaya", "curl"],
                             a.single_runs or a.runs, md5)
        for s in a.sizes:
            md5 = None  # run_curl computes it (timed, for curl-pipeline)
            tools = ["rohimaya", "aws", "rclone"] + (["curl"] if a.curl_big else [])
            self.round_robin("multipart", files[s], s, tools, a.runs, md5)
        for s in a.rss_sizes:
            self.round_robin("rss", files[s], s, a.rss_tools, a.rss_runs)
            os.unlink(files[s])  # the big file goes as soon as it is done with
        self.meta["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        self.meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        self.save()
        report(os.path.join(self.out, "results.json"))

    def close(self):
        if self.devstack and self.devstack.poll() is None:
            os.killpg(self.devstack.pid, signal.SIGTERM)
            try:
                self.devstack.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.devstack.pid, signal.SIGKILL)
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def report(results_path):
    """Median tables (markdown) from results.json, printed and saved as results.md."""
    data = json.load(open(results_path))
    runs = [r for r in data["runs"] if r["ok"] and r["stored_ok"]]
    failed = [r for r in data["runs"] if not (r["ok"] and r["stored_ok"])]
    lines = []

    def group(bench, size, tool):
        return [r for r in runs if r["bench"] == bench and r["size"] == size
                and r["tool"] == tool]

    def row(bench, size, tool):
        g = group(bench, size, tool)
        if not g:
            return None
        return {
            "n": len(g),
            "mb_s": med([r["mb_s"] for r in g]),
            "all": ", ".join(f"{r['mb_s']:.0f}" for r in g),
            "wall": med([r["wall_s"] for r in g]),
            "rss": med([r["max_rss_kib"] / 1024 for r in g]),
            "cpu": med([r["cpu_s_per_gib"] for r in g]),
            "server_cpu": med([r.get("server_cpu_s_per_gib", float("nan")) for r in g]),
            "first": med([r.get("first_progress_s", float("nan")) for r in g]),
        }

    for bench in ("single", "multipart", "rss"):
        sizes = sorted({r["size"] for r in runs if r["bench"] == bench})
        if not sizes:
            continue
        lines.append(f"\n### {bench}\n")
        lines.append("| size | tool | runs | median MB/s | each run MB/s | median wall s "
                     "| rohimaya: time to first progress s | median peak RSS MiB "
                     "| median CPU s/GiB | median server CPU s/GiB |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for s in sizes:
            for tool in ("rohimaya", "curl", "curl-pipeline", "aws", "rclone"):
                x = row(bench, s, tool)
                if x:
                    first = "" if x["first"] != x["first"] else f"{x['first']:.2f}"
                    lines.append(
                        f"| {size_label(s)} | {tool} | {x['n']} | {x['mb_s']:.1f} | "
                        f"{x['all']} | {x['wall']:.2f} | {first} | {x['rss']:.1f} | "
                        f"{x['cpu']:.2f} | {x['server_cpu']:.2f} |")
        lines.append("")
        for s in sizes:
            ro = row(bench, s, "rohimaya")
            if not ro:
                continue
            for tool in ("curl", "curl-pipeline", "aws", "rclone"):
                x = row(bench, s, tool)
                if x:
                    lines.append(f"- {size_label(s)}: rohimaya/{tool} = "
                                 f"{ro['mb_s'] / x['mb_s']:.2f}")
    if failed:
        lines.append("\nFailed runs (left out of the medians): "
                     + ", ".join(f"{r['bench']} {size_label(r['size'])} {r['tool']} "
                                 f"round {r['round']}" for r in failed))
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(os.path.dirname(results_path), "results.md"), "w") as f:
        f.write(f"Run {data['meta'].get('started')} .. {data['meta'].get('finished')}, "
                f"load average at start {data['meta'].get('loadavg_start')}, at end "
                f"{data['meta'].get('loadavg_end')}\n")
        f.write(text)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rohimaya", default="/root/.cache/rohimaya-target-bench/release/rohimaya")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--sizes", default="256M,1G",
                   help="multipart benchmark sizes (rohimaya vs aws vs rclone)")
    p.add_argument("--single-sizes", default="63M,256M,1G",
                   help="single-PUT sizes (rohimaya vs curl); rohimaya is given "
                        "--multipart-threshold SIZE+1 so that it sends one PUT")
    p.add_argument("--single-runs", type=int, default=0,
                   help="rounds of the single-PUT benchmark (default: --runs)")
    p.add_argument("--curl-big", action="store_true",
                   help="also run curl's single PUT in the multipart rounds")
    p.add_argument("--rss-sizes", default="4G")
    p.add_argument("--rss-runs", type=int, default=1)
    p.add_argument("--rss-tools", default="rohimaya,aws,rclone")
    p.add_argument("--curl-no-expect", action="store_true",
                   help="send curl with 'Expect:' (no 100-continue wait)")
    p.add_argument("--pause", type=float, default=1.0, help="seconds between runs")
    p.add_argument("--tmp", default="/tmp")
    p.add_argument("--out", default="bench/out")
    p.add_argument("--keep", action="store_true", help="keep the work dir")
    p.add_argument("--report", help="only print the tables of this results.json")
    a = p.parse_args()
    if a.report:
        report(a.report)
        return
    split = lambda s: [parse_size(x) for x in s.split(",") if x.strip()]
    a.sizes, a.single_sizes, a.rss_sizes = split(a.sizes), split(a.single_sizes), split(a.rss_sizes)
    a.rss_tools = [t for t in a.rss_tools.split(",") if t]
    b = Bench(a)
    try:
        b.main()
    finally:
        b.close()


if __name__ == "__main__":
    main()
