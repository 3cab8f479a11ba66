#!/usr/bin/env python3
"""Memory and scale benchmark (issue 15): RSS and load time of generated configs, apply time of a
large config over the admin API, RSS while it is re-applied under load, routing throughput with
10,000 regex routes, and a reload soak.

Usage:
  bench/memory.py [--quick] [--binary target/release/proxy]    the table (~3 min; --quick ~1 min)
  bench/memory.py --soak 1000                                  the soak: 1,000 applies under load

Both write their report between markers in bench/RESULTS.md (<!-- memory -->, <!-- soak -->) and
print it. Pinning as bench/run: the gateway on core 0, wrk and the upstream nginx on core 1; the
RSS rows run the gateway unpinned with `--workers 2`, as a user would on this machine."""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reload import HANDLER, SCHEMA, block, free_port, get, rss_mib, wait, write_section  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

REGEX = r"~/re%d/(?<id>\d+)$"


# --- generated configs ------------------------------------------------------------------------


def routes_yaml(up_port, n, kind):
    """One service, `n` routes with one path each: `prefix` (/p{i}/) or `regex` (REGEX)."""
    out = ['_format_version: "3.0"', "services:", "  - name: up",
           '    url: "http://127.0.0.1:%d"' % up_port, "    routes:"]
    for i in range(n):
        path = json.dumps(REGEX % i) if kind == "regex" else '"/p%d/"' % i
        out.append("      - {name: r%d, paths: [%s]}" % (i, path))
    out.append('      - {name: marker, paths: ["/marker"]}')
    return "\n".join(out) + "\n"


def kic_like(up_port, variant, routes=10000, instances=1000, plugins=100, consumers=200):
    """The apply scenario, as JSON (what the Kong Ingress Controller posts): `routes` routes with
    a prefix and a regex path each, `instances` instances of `plugins` custom Lua plugins,
    `consumers` consumers with key-auth keys (key-auth on every 100th route). `variant` changes
    one route's paths and the marker, so each apply differs."""
    custom = []
    for i in range(plugins):
        name = "lua-%d" % i
        custom.append({"name": name, "handler": HANDLER.format(prio=1000 + i),
                       "schema": SCHEMA.format(name=name, i=i)})
    rs = []
    for i in range(routes):
        r = {"name": "r%d" % i, "paths": ["/r%d/" % i, REGEX % i], "strip_path": False,
             "tags": ["k8s-name:r%d" % i, "k8s-namespace:default"]}
        ps = []
        if i % (routes // instances) == 0:
            ps.append({"name": "lua-%d" % (i % plugins), "config": {"value": "v%d" % variant}})
        if i % 100 == 1:
            ps.append({"name": "key-auth", "config": {"key_names": ["apikey"]}})
        if ps:
            r["plugins"] = ps
        rs.append(r)
    if variant == 2:
        rs[0]["paths"].append("/extra")
    rs.append({"name": "marker", "paths": ["/marker-%d" % variant]})
    cs = [{"username": "c%d" % i, "keyauth_credentials": [{"key": "key-%d" % i}]} for i in range(consumers)]
    doc = {"_format_version": "3.0", "custom_plugins": custom,
           "services": [{"name": "up", "url": "http://127.0.0.1:%d" % up_port, "routes": rs}],
           "consumers": cs}
    return json.dumps(doc)


# --- processes --------------------------------------------------------------------------------


class Bench:
    def __init__(self, binary, tmp):
        self.binary, self.tmp, self.procs = binary, tmp, []
        self.up_port = free_port()
        conf = os.path.join(tmp, "up.conf")
        with open(conf, "w") as f:
            f.write("worker_processes 1; daemon off; pid %s/up.pid; error_log %s/up.err;\n"
                    "events {}\nhttp { access_log off; server { listen 127.0.0.1:%d; "
                    'location / { return 200 "ok\\n"; } } }\n' % (tmp, tmp, self.up_port))
        self.spawn(["taskset", "-c", "1", "nginx", "-c", conf, "-p", tmp])

    def spawn(self, argv, **kw):
        p = subprocess.Popen(argv, stderr=kw.pop("stderr", subprocess.DEVNULL), **kw)
        self.procs.append(p)
        return p

    def proxy(self, config, workers, marker, pin=None, admin=False):
        """Starts the gateway on `config`; returns (process, port, admin port, seconds to serve
        `marker`)."""
        port, admin_port = free_port(), free_port()
        argv = [self.binary, "--config", config, "--listen", "127.0.0.1:%d" % port, "--listen-tls", "off",
                "--workers", str(workers), "--no-access-log", "--no-watch",
                "--admin-listen", "127.0.0.1:%d" % admin_port if admin else "off"]
        if pin is not None:
            argv = ["taskset", "-c", str(pin)] + argv
        t0 = time.monotonic()
        p = self.spawn(argv, stderr=open(os.path.join(self.tmp, "proxy.err"), "a"))
        wait(lambda: p.poll() is None and get(port, marker)[0] == 200 or p.poll() is not None, 300,
             "the gateway to serve " + marker)
        if p.poll() is not None:
            raise SystemExit("the gateway exited (%d): see %s" % (p.returncode, os.path.join(self.tmp, "proxy.err")))
        return p, port, admin_port, time.monotonic() - t0

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def close(self):
        for p in self.procs:
            self.stop(p)


def post_config(admin_port, body):
    req = urllib.request.Request("http://127.0.0.1:%d/config" % admin_port, data=body.encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    t0 = time.monotonic()
    with urllib.request.urlopen(req, timeout=120) as r:
        r.read()
        status = r.status
    if status != 201:
        raise SystemExit("POST /config answered %d" % status)
    return (time.monotonic() - t0) * 1000.0


def wrk(port, seconds, script, env=None, connections=32):
    """Runs wrk on core 1 with a request script; returns (requests, req/s, failed)."""
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c%d" % connections, "-d%ds" % seconds, "-s", script,
                          "http://127.0.0.1:%d" % port], capture_output=True, text=True,
                         env=dict(os.environ, **(env or {})), timeout=seconds + 60).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(x) for x in sock.groups()) if sock else 0)
    return total, rps, failed


def cycling_script(tmp, name, fmt, n):
    """A wrk script cycling through `n` paths `fmt % i`, in a stride that visits them all."""
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write("local i, n = 0, %d\nrequest = function()\n  i = (i + 7919) %% n\n"
                "  return wrk.format('GET', string.format(%s, i))\nend\n" % (n, json.dumps(fmt)))
    return path


class Sampler:
    """Samples a process's RSS every `period` seconds in a thread; `peak` is the highest."""

    def __init__(self, pid, period=0.25):
        self.pid, self.period, self.peak, self.stop_ = pid, period, 0.0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop_.wait(self.period):
            self.peak = max(self.peak, rss_mib(self.pid))

    def stop(self):
        self.stop_.set()
        self.thread.join()
        return self.peak


# --- the table --------------------------------------------------------------------------------


def table(b, quick):
    rows = []
    tmp = b.tmp

    def load_row(label, n, kind, check=False):
        cfg = os.path.join(tmp, "%s-%d.yaml" % (kind, n))
        with open(cfg, "w") as f:
            f.write(routes_yaml(b.up_port, n, kind))
        check_ms = None
        if check:
            # Median of three: the first run after the file was written also pays for the
            # kernel's page work (0.3 s more at 100,000 routes on this host's VM, now and then).
            runs = []
            for _ in range(3):
                t0 = time.monotonic()
                subprocess.run([b.binary, "check", cfg], check=True, capture_output=True)
                runs.append((time.monotonic() - t0) * 1000.0)
            check_ms = statistics.median(runs)
        p, port, _, ready = b.proxy(cfg, 2, "/marker")
        rss = rss_mib(p.pid)
        extra = ""
        if kind == "regex":
            # Every route once (round robin), then the RSS of a worker set that has used them all.
            script = cycling_script(tmp, "regex.lua", "/re%d/42", n)
            wrk(port, 3 if quick else 10, script)
            extra = "%.0f MiB after %s requests to every route" % (rss_mib(p.pid), "3 s of" if quick else "10 s of")
        b.stop(p)
        rows.append((label, "%.0f MiB" % rss, "%.2f s" % ready,
                     "%.2f s" % (check_ms / 1000.0) if check_ms is not None else "", extra))
        print(rows[-1], file=sys.stderr)

    load_row("1 route", 1, "prefix")
    load_row("10,000 prefix routes", 10000, "prefix")
    load_row("100,000 prefix routes", 100000, "prefix", check=True)
    load_row("10,000 regex routes (`%s`)" % REGEX.replace("%d", "{i}"), 10000, "regex", check=True)

    # Routing throughput: 10,000 regex routes vs 1, one worker on core 0, requests cycling over
    # every route; contenders alternate, best of `rounds` each.
    seconds, rounds = (3, 1) if quick else (10, 3)
    rps = {}
    procs = {}
    for n in (1, 10000):
        cfg = os.path.join(tmp, "regex-%d.yaml" % n)
        if not os.path.exists(cfg):
            with open(cfg, "w") as f:
                f.write(routes_yaml(b.up_port, n, "regex"))
        procs[n] = b.proxy(cfg, 1, "/marker", pin=0)
        script = cycling_script(tmp, "rr-%d.lua" % n, "/re%d/42", n)
        wrk(procs[n][1], 2, script)  # warm-up: every regex compiled and cached
        rps[n] = []
    for _ in range(rounds):
        for n in (10000, 1):
            _, r, failed = wrk(procs[n][1], seconds, os.path.join(tmp, "rr-%d.lua" % n))
            if failed:
                raise SystemExit("%d failed requests in the routing run (%d routes)" % (failed, n))
            rps[n].append(r)
    for n in procs:
        b.stop(procs[n][0])
    ratio = max(rps[10000]) / max(rps[1])
    routing = (max(rps[10000]), max(rps[1]), ratio)
    print("routing", routing, file=sys.stderr)

    # Apply: the KIC-like config over POST /config, alternating two variants.
    bodies = [kic_like(b.up_port, v) for v in (1, 2)]
    cfg = os.path.join(tmp, "kic.json")
    with open(cfg, "w") as f:
        f.write(bodies[0])
    p, port, admin, ready = b.proxy(cfg, 2, "/marker-1", admin=True)
    rss_start = rss_mib(p.pid)
    applies = []
    for i in range(3 if quick else 7):
        applies.append(post_config(admin, bodies[(i + 1) % 2]))
        wait(lambda: get(port, "/marker-%d" % ((i + 1) % 2 + 1))[0] == 200, 30, "the applied config")
    # Under load: re-applied every 3 s while wrk cycles over the prefix paths.
    script = cycling_script(tmp, "kic.lua", "/r%d/x?apikey=key-1", 10000)
    load = 10 if quick else 30
    sampler = Sampler(p.pid)
    result = {}
    t = threading.Thread(target=lambda: result.update(zip(("total", "rps", "failed"), wrk(port, load, script))))
    t.start()
    n_loaded = 0
    end = time.monotonic() + load - 2
    while time.monotonic() < end:
        post_config(admin, bodies[n_loaded % 2])
        n_loaded += 1
        time.sleep(3)
    t.join()
    peak = sampler.stop()
    rss_end = rss_mib(p.pid)
    b.stop(p)
    apply = (statistics.median(applies), min(applies), max(applies), ready, rss_start, peak, rss_end,
             n_loaded, result["failed"], result["total"], load, len(bodies[0]) / 1048576.0)
    return rows, routing, apply


def report_table(rows, routing, apply, quick, started):
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    med, lo, hi, ready, rss_start, peak, rss_end, n, failed, total, load, mib = apply
    out = [
        "<!-- memory -->",
        "## Memory and scale (issue 15): %s" % ("smoke run" if quick else "full run"),
        "",
        "`bench/memory.py%s` on %s, %d cores (%s), took %.0f s. RSS is VmRSS of the gateway process "
        "(`--workers 2`, unpinned) once it serves; *ready* is from exec to the first 200 of a "
        "marker route; `proxy check` is the median of three runs." % (" --quick" if quick else "", datetime.date.today().isoformat(), os.cpu_count(), cpu,
                           time.monotonic() - started),
        "",
        "| config | RSS after start | ready | `proxy check` | after use | goal (issue 15) |",
        "|---|--:|--:|--:|---|---|",
    ]
    goals = ["", "", "≤ 200 MiB / ≤ 1 s / ≤ 1 s", "≤ 120 MiB"]
    for row, goal in zip(rows, goals):
        out.append("| %s | %s | %s | %s | %s | %s |" % (row + (goal,)))
    out += [
        "",
        "| measure | value | goal |",
        "|---|---|---|",
        "| routing: 10,000 regex routes vs 1 (`--workers 1` on core 0, every route in turn) | "
        "%.0f vs %.0f req/s: **%.2f×** | ≥ 0.9× |" % routing,
        "| apply: 10,000 routes (prefix + regex path each), 1,000 Lua instances of 100 custom plugins, "
        "200 consumers with keys (%.1f MiB of JSON), `POST /config`, median (min–max) | %.0f ms (%.0f–%.0f) | ≤ 200 ms |"
        % (mib, med, lo, hi),
        "| the same config: start to serving | %.2f s | |" % ready,
        "| the same config: RSS at start → peak while re-applied every 3 s under load (%d applies in %d s) → after"
        " | %.0f → %.0f → %.0f MiB | ≤ 150 → ≤ 250 MiB |" % (n, load, rss_start, peak, rss_end),
        "| failed requests during those applies | %d of %d | 0 |" % (failed, total),
        "",
        "<!-- /memory -->",
    ]
    return "\n".join(out) + "\n"


# --- the soak ---------------------------------------------------------------------------------


# The compile thread keeps a compile's freed memory for the next one for this long
# (src/reload/compiler.rs, KEEP_SCRATCH), and mimalloc purges what other threads freed after
# as long (src/allocator.rs, keep_freed_pages_for).
KEEP_SCRATCH_S = 5.0
PURGE_DELAY_S = 5.0


def idle_rss(pid):
    """RSS once the process has handed back what the last apply freed: read after the compile
    thread's KEEP_SCRATCH and mimalloc's purge delay, then polled every 100 ms until it moved by
    less than 1 MiB over one second (at most 3 s more). The load keeps running meanwhile."""
    time.sleep(KEEP_SCRATCH_S + PURGE_DELAY_S + 0.5)
    polls = [rss_mib(pid)]
    for _ in range(30):
        time.sleep(0.1)
        polls.append(rss_mib(pid))
        window = polls[-11:]
        if len(window) == 11 and max(window) - min(window) < 1.0:
            break
    return polls[-1]


def growth_window(series, at):
    """Median of the readings at the sample points next to `at` (itself and one either side)."""
    points = [n for n, _ in series]
    i = min(range(len(points)), key=lambda k: abs(points[k] - at))
    return statistics.median(r for _, r in series[max(1, i - 1):i + 2])


def soak(b, applies, started):
    bodies = [kic_like(b.up_port, v) for v in (1, 2)]
    cfg = os.path.join(b.tmp, "kic.json")
    with open(cfg, "w") as f:
        f.write(bodies[0])
    p, port, admin, _ = b.proxy(cfg, 2, "/marker-1", admin=True)
    script = cycling_script(b.tmp, "kic.lua", "/r%d/x?apikey=key-1", 10000)
    # (applies, RSS right after the apply returned, RSS once idle)
    first = rss_mib(p.pid)
    samples = [(0, first, first)]
    stop = threading.Event()
    totals = {"total": 0, "failed": 0, "runs": 0}

    def load():
        # wrk in slices, so that the soak's end is not bound to a guess of its length.
        while not stop.is_set():
            total, _, failed = wrk(port, 5, script, connections=16)
            totals["total"] += total
            totals["failed"] += failed
            totals["runs"] += 1

    t = threading.Thread(target=load)
    t.start()
    times = []
    try:
        for i in range(1, applies + 1):
            times.append(post_config(admin, bodies[i % 2]))
            if i % 50 == 0:
                samples.append((i, rss_mib(p.pid), idle_rss(p.pid)))
                print("soak: %d applies, RSS %.0f MiB, idle %.0f MiB" % samples[-1],
                      file=sys.stderr)
    finally:
        stop.set()
        t.join()
    b.stop(p)
    last_n = samples[-1][0]
    at = {}
    for col in (1, 2):
        series = [(x[0], x[col]) for x in samples]
        at[col] = (growth_window(series, 100), statistics.median(r for _, r in series[-3:]))
    (ibase, iend), (base, end) = at[1], at[2]
    out = [
        "<!-- soak -->",
        "## Reload soak (issue 15)",
        "",
        "`bench/memory.py --soak %d` on %s, took %.0f s: the apply scenario's config (10,000 routes, "
        "1,000 Lua instances, 200 consumers), `POST /config` %d times back to back, alternating two "
        "variants, `--workers 2`, under load (wrk, 16 connections, every route in turn). Every 50 "
        "applies, RSS is read right after the apply returned, and again once idle: the next apply "
        "waits out the compile thread's 5 s `KEEP_SCRATCH` and mimalloc's purge delay (set to the same 5 s), then "
        "until RSS moved by less than 1 MiB over a second. The first reading includes the "
        "transient memory of the apply that just ended and moves by ±10%% with the moment it is "
        "taken; the idle one is what the process keeps, which is what a leak would grow. Growth "
        "compares the median of the readings at 50, 100 and 150 applies with that of the last "
        "three."
        % (applies, datetime.date.today().isoformat(), time.monotonic() - started, applies),
        "",
        "| applies | " + " | ".join(str(s[0]) for s in samples) + " |",
        "|---|" + "--:|" * len(samples),
        "| RSS right after the apply (MiB) | " + " | ".join("%.0f" % s[1] for s in samples) + " |",
        "| RSS once idle (MiB) | " + " | ".join("%.0f" % s[2] for s in samples) + " |",
        "",
        "| measure | value | goal |",
        "|---|---|---|",
        "| idle RSS after %d applies vs after 100 (medians of 3 readings) | %.0f vs %.0f MiB "
        "(%+.1f%%) | ≤ +5%% |" % (last_n, end, base, (end / base - 1) * 100),
        "| the same, read right after the apply | %.0f vs %.0f MiB (%+.1f%%) | |"
        % (iend, ibase, (iend / ibase - 1) * 100),
        "| apply time, median (max) | %.0f ms (%.0f ms) | |" % (statistics.median(times), max(times)),
        "| failed requests | %d of %d | 0 |" % (totals["failed"], totals["total"]),
        "",
        "<!-- /soak -->",
    ]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--soak", type=int, metavar="N", help="run the reload soak with N applies instead")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/proxy"))
    ap.add_argument("--no-write", action="store_true", help="print the report only")
    args = ap.parse_args()
    for tool in ("nginx", "wrk", "taskset"):
        if not shutil.which(tool):
            raise SystemExit("bench/memory.py needs %s (bench/run installs it)" % tool)
    os.sched_setaffinity(0, {1})
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="sluice-memory.")
    b = Bench(args.binary, tmp)
    try:
        if args.soak:
            text, marker = soak(b, args.soak, started), "soak"
        else:
            text, marker = report_table(*table(b, args.quick), args.quick, started), "memory"
        print(text)
        if not args.no_write:
            write_section(marker, text)
    finally:
        b.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
