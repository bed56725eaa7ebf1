#!/usr/bin/env python3
"""Desktop app benchmark (issue 7, "Performance"): startup, idle memory, idle CPU and
the UI's frame time under transfer progress, of the release build of rohimaya-desktop.

Run it through bench/app.sh, which builds the app and provides what this needs: an X
display (Xvfb), a D-Bus session with an unlocked gnome-keyring, and tauri-driver. Python
3 standard library only. Every run of the app gets fresh data, config, library and XDG
(WebKit cache) directories under one temporary directory, and the embedded local backend.

Phases (all by default; --phases to choose):

  launch  N launches of the binary itself (no WebDriver): "first" = fresh directories
          every time (the first-run sign-in screen), "signed-in" = the directories of an
          account created once beforehand (the signed-in sections). Timed from this
          script's clock at spawn to the app's `first screen ready` log line (the UI calls
          `ui_ready` after the frame that paints its first real screen); the app's own
          elapsed_ms since process start is recorded beside it.
  idle    Through tauri-driver: create a local account in the UI, add one watched folder
          (the `add_watch_folder` command, as the Watched folders view calls it), restart
          the app signed in, let it settle, then the RSS/PSS of the app process and its
          WebKit children, and the CPU time (utime+stime) of the whole tree over
          --idle-seconds, with voluntary context switches per thread (what wakes up).
  frames  In the same app: --transfers text files uploaded under a bandwidth limit
          (queue settings pre-seeded in state.db, as `rohimaya queue set` writes them),
          the Transfers view shown, then requestAnimationFrame deltas recorded in the
          page for --frame-seconds (and the same with no transfers, as a baseline).

Results: printed as a table and written to OUT/app.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

READY_LINE = "first screen ready"
ELAPSED_RE = re.compile(r"elapsed_ms=(\d+)")
SCREEN_RE = re.compile(r"screen=(\w+)")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
PASSWORD = "a long local password 42"

WORDS = (
    "the lighthouse keeper climbed the stairs each evening and counted the steps aloud "
    "while the sea below argued with the rocks about the old boats that never came home "
    "she wrote letters to nobody and folded them into the lamp room drawer with the salt"
).split()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes and /proc


def proc_children() -> dict[int, list[int]]:
    """ppid -> child pids, from /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    children = proc_children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process (all its threads), in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def threads(pid: int) -> dict[str, tuple[int, int]]:
    """Per thread `name#tid`: (cpu ticks, voluntary + involuntary context switches)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        switches = sum(
            int(line.split()[1])
            for line in status.splitlines()
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"))
        )
        out[f"{name}#{tid}"] = (int(fields[11]) + int(fields[12]), switches)
    return out


def memory(pid: int) -> dict[str, float]:
    """VmRSS and Pss (MiB) of one process."""
    rss = pss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
    except OSError:
        pass
    return {"rss_mib": round(rss, 1), "pss_mib": round(pss, 1)}


def find_app(root: int, name: str, timeout: float = 60) -> int:
    """The pid of the app (comm `name`, truncated to 15) under `root`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in tree(root):
            if comm(p) == name[:15]:
                return p
        time.sleep(0.2)
    raise RuntimeError(f"no {name} process under pid {root} within {timeout} s")


def wait_gone(pid: int, timeout: float = 30) -> None:
    """Waits until `pid` has exited (the single-instance lock goes with it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
                return
        except (OSError, IndexError):
            return
        time.sleep(0.1)
    raise RuntimeError(f"the app (pid {pid}) did not exit within {timeout} s")


SINGLE_INSTANCE_NAME = "app.rohimaya.desktop.SingleInstance"


def wait_name_free(timeout: float = 30) -> None:
    """Waits until no process owns the single-instance D-Bus name: an app that is still
    shutting down would otherwise take the next launch for a second instance."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(
            ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
             "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner",
             f"string:{SINGLE_INSTANCE_NAME}"],
            capture_output=True, text=True)
        if r.returncode != 0 or "boolean false" in r.stdout:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{SINGLE_INSTANCE_NAME} still owned after {timeout} s")


def tree_memory(app: int) -> dict:
    procs = []
    for p in tree(app):
        try:
            procs.append({"pid": p, "comm": comm(p), **memory(p)})
        except OSError:
            continue
    return {
        "processes": procs,
        "total_rss_mib": round(sum(p["rss_mib"] for p in procs), 1),
        "total_pss_mib": round(sum(p["pss_mib"] for p in procs), 1),
    }


def cpu_window(app: int, seconds: float) -> dict:
    """CPU time of the app's process tree over `seconds`, and the busiest threads."""

    def sample():
        procs, thr = {}, {}
        for p in tree(app):
            try:
                procs[p] = (comm(p), cpu_ticks(p))
                for t, v in threads(p).items():
                    thr[(comm(p), t)] = v
            except OSError:
                continue
        return procs, thr

    (p0, t0), w0 = sample(), time.monotonic()
    time.sleep(seconds)
    (p1, t1), w1 = sample(), time.monotonic()
    wall = w1 - w0
    per_proc = {}
    for pid, (name, ticks) in p1.items():
        before = p0.get(pid, (name, 0))[1]
        per_proc.setdefault(name, 0)
        per_proc[name] += ticks - before
    total = sum(per_proc.values()) / CLK_TCK
    thr = []
    for key, (ticks, sw) in t1.items():
        b_ticks, b_sw = t0.get(key, (0, 0))
        thr.append(
            {
                "process": key[0],
                "thread": key[1],
                "cpu_s": (ticks - b_ticks) / CLK_TCK,
                "switches_per_s": round((sw - b_sw) / wall, 2),
            }
        )
    thr.sort(key=lambda t: (t["switches_per_s"], t["cpu_s"]), reverse=True)
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(total, 2),
        "cpu_pct_of_one_core": round(100 * total / wall, 2),
        "per_process_cpu_s": {k: v / CLK_TCK for k, v in per_proc.items()},
        "wakeups_per_s": round(sum(t["switches_per_s"] for t in thr), 1),
        "busiest_threads": thr[:15],
    }


# ---------------------------------------------------------------- the app's environment


class Dirs:
    """One app's data, config, library and XDG directories."""

    def __init__(self, root: Path, name: str):
        self.root = root / name
        for sub in ("data", "config", "library", "xdg-config", "xdg-data", "xdg-cache"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            ROHIMAYA_DATA_DIR=str(self.root / "data"),
            ROHIMAYA_CONFIG_DIR=str(self.root / "config"),
            ROHIMAYA_LIBRARY_DIR=str(self.root / "library"),
            ROHIMAYA_SUPABASE_URL="",
            ROHIMAYA_SUPABASE_ANON_KEY="",
            ROHIMAYA_API_URL="",
            # WebKit's caches and the window-state file: fresh per directory set too.
            XDG_CONFIG_HOME=str(self.root / "xdg-config"),
            XDG_CACHE_HOME=str(self.root / "xdg-cache"),
            RUST_LOG="info",
            NO_COLOR="1",
        )
        # The keyring daemon was started with its own XDG_DATA_HOME; the app reaches it
        # over D-Bus, so the app gets a fresh one for WebKit's local storage.
        env["XDG_DATA_HOME"] = str(self.root / "xdg-data")
        # Measure how users' windows draw (on the CPU): under WebDriver the app would keep
        # WebKit's GL compositing for screenshots (src-tauri/webview.rs); this bench takes
        # none. ROHIMAYA_GPU_COMPOSITING=1 in the caller's environment measures the GL path.
        env.setdefault("ROHIMAYA_GPU_COMPOSITING", "0")
        return env


class AppRun:
    """The app binary started directly, its stderr read line by line."""

    def __init__(self, binary: str, dirs: Dirs):
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.ready_at = 0.0
        self.elapsed_ms = None
        self.screen = None
        self.spawned_at = time.monotonic()
        self.proc = subprocess.Popen(
            [binary],
            env=dirs.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            now = time.monotonic()
            line = ANSI_RE.sub("", raw.rstrip())
            self.lines.append(line)
            if READY_LINE in line and not self.ready.is_set():
                self.ready_at = now
                if m := ELAPSED_RE.search(line):
                    self.elapsed_ms = int(m.group(1))
                if m := SCREEN_RE.search(line):
                    self.screen = m.group(1)
                self.ready.set()

    def wait_ready(self, timeout: float) -> float:
        if not self.ready.wait(timeout):
            tail = "\n".join(self.lines[-15:])
            raise RuntimeError(f"no '{READY_LINE}' within {timeout} s; last lines:\n{tail}")
        return (self.ready_at - self.spawned_at) * 1000

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------- WebDriver (tauri-driver)


class Driver:
    """A minimal W3C WebDriver client over tauri-driver (as ui/e2e/driver.mjs)."""

    def __init__(self, tauri_driver: str, port: int, env: dict[str, str], log_to: Path):
        self.base = f"http://127.0.0.1:{port}"
        self.session = None
        self.log = open(log_to, "a")  # the driver's and the app's output
        self.proc = subprocess.Popen(
            [tauri_driver, "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
        )
        self.until("tauri-driver listening", lambda: self._status_ok(), 30)
        time.sleep(0.5)
        if self.proc.poll() is not None:
            raise RuntimeError(f"tauri-driver exited (is port {port} taken by another one?)")

    def _status_ok(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/status", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    def call(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.base}{path}",
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return json.load(r).get("value")
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path}: {e.code} {e.read()[:300]!r}") from None

    def s(self, path: str, body=None):
        return self.call("GET" if body is None else "POST", f"/session/{self.session}{path}", body)

    def open(self, app: str) -> None:
        caps = {"capabilities": {"alwaysMatch": {"tauri:options": {"application": app}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def close(self) -> None:
        if self.session:
            try:
                self.call("DELETE", f"/session/{self.session}")
            except (RuntimeError, OSError, http.client.HTTPException):
                # Ending the session quits the app; the driver may drop the connection.
                pass
        self.session = None

    def stop(self) -> None:
        try:
            self.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    @staticmethod
    def until(what: str, probe, timeout: float = 60):
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                v = probe()
                if v:
                    return v
            except (RuntimeError, urllib.error.URLError, ConnectionError) as e:
                last = str(e)
            time.sleep(0.25)
        raise RuntimeError(f"no {what} within {timeout} s {last}")

    def run(self, script: str, *args):
        return self.s("/execute/sync", {"script": script, "args": list(args)})

    def all(self, css: str) -> list[str]:
        els = self.s("/elements", {"using": "css selector", "value": css})
        return [e[ELEMENT_KEY] for e in els]

    def texts(self, css: str) -> list[str]:
        return self.run(
            "return [...document.querySelectorAll(arguments[0])]"
            ".map((e) => (e.textContent ?? '').trim());",
            css,
        )

    def click_button(self, text: str, timeout: float = 30) -> None:
        def probe():
            ids, texts = self.all("button"), self.texts("button")
            hits = [i for i, t in zip(ids, texts) if t == text]
            return hits[0] if hits else None

        el = self.until(f'a "{text}" button', probe, timeout)
        self.s(f"/element/{el}/click", {})

    def type(self, css: str, value: str) -> None:
        el = self.until(f"an input {css}", lambda: (self.all(css) or [None])[0])
        self.s(f"/element/{el}/clear", {})
        self.s(f"/element/{el}/value", {"text": value})

    def invoke(self, cmd: str, args: dict):
        result = self.s(
            "/execute/async",
            {
                "script": "const done = arguments[arguments.length - 1];"
                "window.__TAURI_INTERNALS__.invoke(arguments[0], arguments[1])"
                ".then((v) => done({ ok: v }), (e) => done({ err: e }));",
                "args": [cmd, args],
            },
        )
        if result and "err" in result:
            raise RuntimeError(f"{cmd}: {json.dumps(result['err'])}")
        return (result or {}).get("ok")

    def signed_in(self, timeout: float = 90):
        return self.until(
            "the signed-in window", lambda: self.all('nav[aria-label="Sections"]'), timeout
        )


# ---------------------------------------------------------------- phases


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
        "runs": [round(v, 1) for v in values],
    }


def one_launch(binary: str, dirs: Dirs, timeout: float) -> dict:
    wait_name_free()
    run = AppRun(binary, dirs)
    try:
        ms = run.wait_ready(timeout)
        return {"bench_ms": ms, "app_ms": run.elapsed_ms, "screen": run.screen, "log": run.lines}
    finally:
        run.stop()


def phase_launch(args, tmp: Path, account_dirs: Dirs, kind: str) -> dict:
    """`kind` "signed-in": relaunches of the account's directories; "first-run": fresh
    directories each time. Run the first-run launches last: the keyring entry is per
    profile name ("local"), so a fresh local backend's sign-in screen follows a restore
    attempt that fails there and forgets the account's session."""
    runs, screen = [], ("Main" if kind == "signed-in" else "SignIn")
    for i in range(args.runs):
        dirs = account_dirs if kind == "signed-in" else Dirs(tmp, f"launch-first-{i}")
        r = one_launch(args.app, dirs, args.timeout)
        if kind != "signed-in":
            shutil.rmtree(dirs.root, ignore_errors=True)
        log(f"launch {kind} #{i + 1}: {r['bench_ms']:.0f} ms (app {r['app_ms']} ms, {r['screen']})")
        if r["screen"] != screen:
            log("\n".join(r["log"][-40:]))
            raise RuntimeError(f"a {kind} launch showed {r['screen']}, expected {screen}")
        runs.append(r)
    return {
        "bench_ms": summary([r["bench_ms"] for r in runs]),
        "app_ms": summary([r["app_ms"] for r in runs]),
    }


def create_account(args, dirs: Dirs, watched: Path) -> None:
    """Signs up in the UI and adds one watched folder, then quits the app."""
    d = Driver(args.tauri_driver, args.port, dirs.env(), Path(args.out) / "app-driver.log")
    app = None
    try:
        d.open(args.app)
        app = find_app(d.proc.pid, Path(args.app).name)
        d.until("the sign-up form", lambda: "Create a local account" in d.texts("h2"), 90)
        d.type('input[type="email"]', f"bench-{int(time.time())}@example.com")
        d.type('input[type="password"]', PASSWORD)
        d.click_button("Create account")
        d.signed_in()
        d.invoke(
            "add_watch_folder",
            {
                "request": {
                    "path": str(watched),
                    "recursive": False,
                    "after_upload": "leave",
                    "options": {
                        "title": None,
                        "author": None,
                        "voice": None,
                        "format": None,
                        "bitrate": None,
                        "mode": None,
                    },
                    "ignore": [],
                }
            },
        )
        folders = d.invoke("watch_folders", {})
        if not any(f.get("path") == str(watched) for f in folders or []):
            raise RuntimeError(f"the watched folder is not listed: {folders}")
    finally:
        d.stop()
        if app:
            wait_gone(app)


def seed_queue_settings(dirs: Dirs, files_in_flight: int, bandwidth: int) -> None:
    """Writes the queue settings as QueueStore::save_settings does (the app is stopped)."""
    db = sqlite3.connect(dirs.root / "data" / "state.db")
    with db:
        for key, value in (("files_in_flight", files_in_flight), ("bandwidth_limit", bandwidth)):
            db.execute(
                "INSERT INTO queue_settings (key, value) VALUES (?1, ?2) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, str(value)),
            )
    db.close()


FRAMES_JS = """
const ms = arguments[0];
const probe = arguments[1];
const f = { deltas: [], long: [], gaps: [], events: [], mutations: [], done: false };
window.__benchFrames = f;
let last = null;
const start = performance.now();
const end = start + ms;
function frame(t) {
  if (last !== null) {
    f.deltas.push(t - last);
    if (t - last > 34) f.long.push([Math.round(last - start), Math.round(t - last)]);
  }
  last = t;
  if (t < end) requestAnimationFrame(frame); else f.done = true;
}
requestAnimationFrame(frame);
if (probe) {
  // The page's main thread: a 5 ms timer chain; its gaps say when the thread was busy.
  let prev = performance.now();
  const tick = () => {
    const now = performance.now();
    if (now - prev > 30) f.gaps.push([Math.round(prev - start), Math.round(now - prev)]);
    prev = now;
    if (now < end) setTimeout(tick, 5);
  };
  setTimeout(tick, 5);
  // Core events reaching the page (the same way @tauri-apps/api listens).
  const T = window.__TAURI_INTERNALS__;
  const handler = T.transformCallback((e) => {
    const p = e.payload || {};
    f.events.push([Math.round(performance.now() - start), p.type, p.transfer_id, p.state]);
  });
  T.invoke('plugin:event|listen', { event: 'core-event', target: { kind: 'Any' }, handler });
  // DOM changes: what the page redraws.
  const mo = new MutationObserver((records) => {
    const t = Math.round(performance.now() - start);
    for (const r of records) {
      if (f.mutations.length >= 400) { mo.disconnect(); return; }
      const el = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      const where = el ? el.tagName.toLowerCase() + (el.className ? '.' + String(el.className).split(' ')[0] : '') : '?';
      f.mutations.push([t, r.type, where, r.attributeName || '', (r.target.nodeValue || '').slice(0, 30)]);
    }
  });
  mo.observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
  setTimeout(() => mo.disconnect(), ms);
}
"""


def frames(d: Driver, seconds: float, probe: bool = False) -> dict:
    d.run(FRAMES_JS, seconds * 1000, probe)
    time.sleep(seconds)
    rec = d.until(
        "the frame recording",
        lambda: (lambda f: f if f and f["done"] else None)(d.run("return window.__benchFrames;")),
        seconds + 30,
    )
    deltas = sorted(rec["deltas"])
    n = len(deltas)
    return {
        "frames": n,
        "fps": round(n / (sum(deltas) / 1000), 1) if n else 0,
        "median_ms": round(statistics.median(deltas), 2),
        "p95_ms": round(deltas[int(0.95 * (n - 1))], 2),
        "p99_ms": round(deltas[int(0.99 * (n - 1))], 2),
        "max_ms": round(deltas[-1], 2),
        "over_17ms": sum(1 for x in deltas if x > 17.0),
        "over_34ms": sum(1 for x in deltas if x > 34.0),
        # Frames missed: a 50 ms delta is two vsyncs skipped.
        "missed_frames": sum(max(0, round(x / (1000 / 60)) - 1) for x in deltas),
        # [start ms, length ms] of each frame > 34 ms; with --probe also the page's main
        # thread gaps > 30 ms and the core events the page received.
        "long_frames": rec["long"],
        **({"main_thread_gaps": rec["gaps"], "core_events": len(rec["events"]),
            "core_event_log": rec["events"], "mutations": rec["mutations"]} if probe else {}),
    }


def write_manuscripts(folder: Path, count: int, size: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    paths = []
    for i in range(count):
        words, total = [f"Chapter {i + 1}."], 0
        while total < size:
            w = rng.choice(WORDS)
            words.append(w)
            total += len(w) + 1
        p = folder / f"manuscript-{i + 1:02}.txt"
        p.write_text(" ".join(words)[:size])
        paths.append(str(p))
    return paths


def phase_idle_and_frames(args, tmp: Path, dirs: Dirs, phases: set[str]) -> dict:
    out: dict = {}
    d = Driver(args.tauri_driver, args.port, dirs.env(), Path(args.out) / "app-driver.log")
    try:
        d.open(args.app)
        app = find_app(d.proc.pid, Path(args.app).name)
        d.signed_in()
        if "idle" in phases:
            log(f"idle: signed in, one watched folder; settling {args.settle} s")
            time.sleep(args.settle)
            out["idle_memory"] = tree_memory(app)
            log(f"idle: measuring CPU over {args.idle_seconds} s")
            out["idle_cpu"] = cpu_window(app, args.idle_seconds)
            log(
                f"idle: {out['idle_cpu']['cpu_pct_of_one_core']}% of a core, "
                f"RSS {out['idle_memory']['total_rss_mib']} MiB, "
                f"PSS {out['idle_memory']['total_pss_mib']} MiB"
            )
        if "frames" in phases:
            d.click_button("Transfers")
            time.sleep(2)
            if args.inject_css:
                d.run("const s = document.createElement('style'); s.textContent = arguments[0];"
                      "document.head.appendChild(s);", args.inject_css)
            out["frames_baseline"] = frames(d, args.frame_seconds, args.probe)
            log(f"frames with no transfers: {out['frames_baseline']}")
            paths = write_manuscripts(tmp / "manuscripts", args.transfers, args.file_size)
            options = {"title": None, "author": "Bench", "voice": None, "format": "mp3",
                       "bitrate": None, "mode": None}
            enqueued_at = time.monotonic()
            offers = d.invoke("upload_files", {"paths": paths, "options": options, "force": False})
            refused = [o for o in offers if o.get("error")]
            if refused:
                raise RuntimeError(f"uploads refused: {refused[:3]}")
            def uploading() -> int:
                return sum(1 for i in d.invoke("transfers", {}) if i["state"] == "uploading")

            active = d.until(
                "transfers in flight",
                lambda: (lambda n: n if n >= args.min_active else None)(uploading()),
                120,
            )
            out["transfers"] = {
                "queued": len(offers),
                "uploading_at_start": active,
                "bandwidth_limit": args.bandwidth,
                "file_size": args.file_size,
            }
            out["transfers"]["seconds_from_enqueue_to_uploading"] = round(time.monotonic() - enqueued_at, 1)
            if args.scroll_bottom:
                d.run("const s = document.querySelector('.scroller'); if (s) s.scrollTop = s.scrollHeight;")
            time.sleep(args.frames_delay)
            if args.frames_view != "Transfers":
                d.click_button(args.frames_view)
                time.sleep(1)
            if args.probe:
                import base64
                png = d.s("/screenshot")
                (Path(args.out) / "transfers.png").write_bytes(base64.b64decode(png))
            cpu = {}
            t = threading.Thread(target=lambda: cpu.update(cpu_window(app, args.frame_seconds)))
            t.start()
            perf = None
            if args.perf_out:
                perf = subprocess.Popen(
                    ["perf", "record", "-q", "-F", "499", "-o", args.perf_out,
                     "-p", ",".join(str(p) for p in tree(app)), "--", "sleep", str(args.frame_seconds)],
                    stdout=subprocess.DEVNULL)
            out["frames_transfers"] = frames(d, args.frame_seconds, args.probe)
            t.join()
            if perf:
                perf.wait()
            out["transfers_cpu"] = {k: cpu[k] for k in ("cpu_pct_of_one_core", "per_process_cpu_s", "busiest_threads")}
            items = d.invoke("transfers", {})
            states = [i["state"] for i in items]
            out["transfers"]["states_at_end"] = {st: states.count(st) for st in sorted(set(states))}
            out["transfers"]["rows_drawn"] = len(d.all('[role="listitem"]'))
            log(f"frames with transfers: {out['frames_transfers']}; {out['transfers']}")
    finally:
        d.stop()
        wait_gone(app)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--app", required=True, help="the release rohimaya-desktop binary")
    ap.add_argument("--tauri-driver", default=shutil.which("tauri-driver") or "tauri-driver")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out"))
    ap.add_argument("--phases", default="launch,idle,frames")
    ap.add_argument("--runs", type=int, default=7, help="launches of each kind")
    ap.add_argument("--timeout", type=float, default=60, help="seconds a launch may take")
    ap.add_argument("--settle", type=float, default=20, help="seconds after sign-in before idle")
    ap.add_argument("--idle-seconds", type=float, default=60)
    ap.add_argument("--frame-seconds", type=float, default=20)
    ap.add_argument("--transfers", type=int, default=50)
    ap.add_argument("--file-size", type=int, default=2 << 20)
    ap.add_argument("--files-in-flight", type=int, default=16, help="the queue allows 1..16")
    ap.add_argument("--min-active", type=int, default=16, help="uploads running before frames")
    ap.add_argument("--bandwidth", type=int, default=256 << 10, help="bytes/s, shared")
    ap.add_argument("--port", type=int, default=4455)
    # Experiments for the frame phase (which part of the page costs the frames):
    ap.add_argument("--frames-view", default="Transfers",
                    help="the section shown while transfers run (e.g. Settings: not drawn)")
    ap.add_argument("--inject-css", default="", help="a style sheet added before measuring")
    ap.add_argument("--probe", action="store_true",
                    help="also record the page's main-thread gaps and core events received")
    ap.add_argument("--frames-delay", type=float, default=0,
                    help="seconds to wait once the uploads run, before measuring")
    ap.add_argument("--scroll-bottom", action="store_true",
                    help="scroll the list to its end (the oldest rows: the ones uploading)")
    ap.add_argument("--perf-out", default="", help="perf record the app's processes to FILE")
    args = ap.parse_args()
    phases = set(args.phases.split(","))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "app": args.app,
        "args": vars(args),
    }
    tmp = Path(tempfile.mkdtemp(prefix="rohimaya-appbench-"))
    try:
        account = Dirs(tmp, "account")
        watched = tmp / "watched"
        watched.mkdir()
        log("creating the local account and the watched folder (WebDriver)")
        create_account(args, account, watched)
        if "frames" in phases:
            seed_queue_settings(account, args.files_in_flight, args.bandwidth)
        if "launch" in phases:
            result["launch_signed_in"] = phase_launch(args, tmp, account, "signed-in")
        if phases & {"idle", "frames"}:
            result.update(phase_idle_and_frames(args, tmp, account, phases))
        if "launch" in phases:
            result["launch_first_run"] = phase_launch(args, tmp, account, "first-run")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    (out_dir / "app.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
