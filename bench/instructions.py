#!/usr/bin/env python3
"""Instructions per request (issue 14), counted by valgrind's callgrind: a figure that does not
move with this host's noise, next to bench/run's req/s ratios.

Each server under test (the gateway, nginx, nginx+Lua, with bench/run's configs) runs under
`valgrind --tool=callgrind` and answers W requests over one keep-alive connection; then its
counters are zeroed (`callgrind_control --zero`), it answers N more on the same connection, and
its counters are dumped: the dump / N is the cost of one request. Start-up, warm-up (and the
LuaJIT compiler's work, which differs from one process to the next with where the bytecode
lands and the compiler's random back-off after an aborted trace) and shutdown are not counted,
nor the TLS handshake. Counted per thread: for the gateway, the worker thread (the one that
runs Pingora's `process_new_http`); its other threads (config compile, file watch, Pingora's
timer tick) do no per-request work. nginx runs as one process (`master_process off`). The
upstream (nginx answering `200 ok`) runs natively, not counted.

Caveat: valgrind counts each iteration of `rep movsb` as one instruction, so large memcpy calls
(a 7 KB future moved twice per request) weigh more here than in CPU time.

Usage: bench/instructions.py [--requests N] [--warmup W] [--only plain,lua1,lua10,https]
                             [--proxy target/dist/proxy] [--keep] [--no-results] [--cache]
Writes its table between the <!-- instructions --> markers of bench/RESULTS.md and prints it.
With --keep, the callgrind files stay in the printed directory: `callgrind_annotate` on a
dump (`*.1-NN`) shows where N requests' instructions go. With --cache, callgrind also simulates
the caches and the branch predictor and a second table gives L1 misses and mispredicted branches
per request: where a server spends time that its instruction count does not show."""

import argparse
import datetime
import glob
import http.client
import os
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import configs  # noqa: E402
from reload import free_port, write_section  # noqa: E402

SCENARIOS = {
    # key: (title, Lua plugins, TLS)
    "plain": ("plain proxy, 1 route", 0, False),
    "lua1": ("one Lua plugin", 1, False),
    "lua10": ("10 Lua plugins", 10, False),
    "https": ("HTTPS termination (plain proxy)", 0, True),
}


def requests(port, n, tls=False, limit=300.0, warmup=0, after_warmup=None):
    """Sends warmup + n GETs over one keep-alive connection (waiting up to `limit` s for the
    server under valgrind to listen), calling after_warmup() between the two; every answer must
    be 200 "ok". With tls, the connection is HTTPS (one handshake, before the warm-up)."""
    deadline = time.monotonic() + limit
    while True:
        try:
            if tls:
                conn = http.client.HTTPSConnection(
                    "127.0.0.1", port, timeout=60, context=ssl._create_unverified_context())
            else:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.connect()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the server on port %d did not listen within %.0f s" % (port, limit))
            time.sleep(0.1)
    for i in range(warmup + n):
        if i == warmup and after_warmup:
            after_warmup()
        conn.request("GET", "/", headers={"x-in": "hello"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200 or body != b"ok\n":
            raise SystemExit("port %d answered %d %r" % (port, r.status, body[:100]))
    conn.close()


def control(pid, what, log):
    """Runs `callgrind_control --<what> pid` (it returns once callgrind has done it)."""
    with open(log, "a") as err:
        r = subprocess.run(["callgrind_control", "--%s" % what, str(pid)], stdout=err,
                           stderr=subprocess.STDOUT, timeout=120)
    if r.returncode != 0:
        raise SystemExit("callgrind_control --%s %d failed (see %s)" % (what, pid, log))


# With --cache, callgrind also simulates the caches and the branch predictor (valgrind's model
# of this machine's L1 and last-level caches): what an instruction count does not show.
CACHE_ARGS = ["--cache-sim=yes", "--branch-sim=yes"]
# The simulated events reported per request: name, the callgrind events added together.
CACHE_EVENTS = [("L1 data misses", ("D1mr", "D1mw")), ("L1 instruction misses", ("I1mr",)),
                ("mispredicted branches", ("Bcm", "Bim"))]


def counted(argv, port, warmup, n, out_prefix, stop_signal, log, marker, tls=False, cache=False):
    """Events of n requests: the server started under callgrind, `warmup` requests, the
    counters zeroed, n requests, the counters dumped, a clean stop. Counts the dumped threads
    that ran `marker` (a function of the request path), or all of them. Returns {event: total}
    ("Ir", the instructions, and with `cache` the simulated misses)."""
    for f in glob.glob(out_prefix + ".*"):
        os.remove(f)
    cmd = ["valgrind", "--tool=callgrind", "--separate-threads=yes",
           "--callgrind-out-file=%s.%%p" % out_prefix] + (CACHE_ARGS if cache else []) + argv
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT)
    try:
        requests(port, n, tls, warmup=warmup,
                 after_warmup=lambda: control(proc.pid, "zero", log + ".control"))
        control(proc.pid, "dump", log + ".control")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    proc.send_signal(stop_signal)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise SystemExit("%s did not stop on signal %d (see %s)" % (argv[0], stop_signal, log))
    totals = {}
    files = glob.glob("%s.%d.1-*" % (out_prefix, proc.pid)) or glob.glob(
        "%s.%d.1" % (out_prefix, proc.pid))
    for path in files:
        with open(path, errors="replace") as f:
            text = f.read()
        if marker and marker not in text:
            continue
        events = re.search(r"^events: (.+)$", text, flags=re.M)
        values = re.search(r"^totals: (.+)$", text, flags=re.M)
        if events and values:
            for name, v in zip(events.group(1).split(), values.group(1).split()):
                totals[name] = totals.get(name, 0) + int(v)
    if not files or not totals.get("Ir"):
        raise SystemExit("no callgrind totals in %s.%d.1* (see %s)" % (out_prefix, proc.pid, log))
    return totals


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1000, help="N, the requests counted (1000)")
    ap.add_argument("--warmup", type=int, default=200, help="W, requests before the count (200)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per server; the median is reported (3)")
    ap.add_argument("--only", default="", help="comma-separated: " + ",".join(SCENARIOS))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    ap.add_argument("--proxy", default=os.path.join(target, "dist", "proxy"))
    ap.add_argument("--keep", action="store_true", help="keep the callgrind files")
    ap.add_argument("--no-results", action="store_true", help="do not rewrite bench/RESULTS.md")
    ap.add_argument("--cache", action="store_true",
                    help="also simulate the caches and branch predictor (~3x slower): L1 misses "
                         "and mispredicted branches per request, in a second table")
    args = ap.parse_args()
    for tool in ("valgrind", "nginx"):
        if not shutil.which(tool):
            sys.exit("%s not found: apt-get install valgrind nginx libnginx-mod-http-lua" % tool)
    if not os.access(args.proxy, os.X_OK):
        sys.exit("%s not found: scripts/build-dist, or pass --proxy" % args.proxy)
    only = [x for x in args.only.split(",") if x] or list(SCENARIOS)
    unknown = [x for x in only if x not in SCENARIOS]
    if unknown:
        sys.exit("unknown scenario %s (have %s)" % (unknown, ", ".join(SCENARIOS)))

    tmp = tempfile.mkdtemp(prefix="sluice-instr.")
    os.makedirs(os.path.join(tmp, "nginx-tmp"))
    with open(os.path.join(tmp, "nginx_plugins.lua"), "w") as f:
        f.write(configs.nginx_plugins_lua())
    up_port = free_port()
    with open(os.path.join(tmp, "up.conf"), "w") as f:
        f.write(configs.nginx_upstream(tmp, up_port))
    upstream = subprocess.Popen(["nginx", "-p", tmp, "-c", os.path.join(tmp, "up.conf"),
                                 "-e", os.path.join(tmp, "up.err")], stderr=subprocess.DEVNULL)
    rows, started = [], time.monotonic()
    try:
        for key in only:
            title, plugins, tls = SCENARIOS[key]
            port = free_port()
            yaml = os.path.join(tmp, "%s.yaml" % key)
            with open(yaml, "w") as f:
                f.write(configs.kong_plain(up_port, plugins))
            name = "nginx-%s" % key
            conf = os.path.join(tmp, name + ".conf")
            pems = None
            if tls:
                pems = configs.bench_cert(tmp)  # bench/run's HTTPS scenario's
            with open(conf, "w") as f:
                f.write(configs.nginx_peer(tmp, name, port, up_port, plugins, tls=pems))
            listen = ["--listen", "127.0.0.1:%d" % port, "--listen-tls", "off"]
            if tls:
                listen = ["--listen", "127.0.0.1:%d" % free_port(), "--listen-tls",
                          "127.0.0.1:%d" % port, "--ssl-cert", pems[0], "--ssl-cert-key", pems[1]]
            contenders = [
                ("sluice", [args.proxy, "--config", yaml] + listen + [
                            "--workers", "1", "--admin-listen", "off",
                            "--no-access-log", "--shutdown-timeout", "1"], signal.SIGTERM,
                 "process_new_http"),
                ("nginx+Lua" if plugins else "nginx",
                 ["nginx", "-p", tmp, "-c", conf, "-e", os.path.join(tmp, name + ".err"),
                  "-g", "master_process off;"], signal.SIGQUIT, None),
            ]
            per, spread, sim = {}, {}, {}
            for who, argv, sig, marker in contenders:
                samples, sims = [], []
                for r in range(max(1, args.repeat)):
                    prefix = os.path.join(tmp, "cg.%s.%s.%d" % (key, who.replace("+", ""), r))
                    count = counted(argv, port, args.warmup, args.requests, prefix, sig,
                                    prefix + ".log", marker, tls, args.cache)
                    samples.append(count["Ir"] / float(args.requests))
                    sims.append([sum(count.get(e, 0) for e in evs) / float(args.requests)
                                 for _, evs in CACHE_EVENTS])
                per[who] = statistics.median(samples)
                sim[who] = [statistics.median(col) for col in zip(*sims)]
                spread[who] = (max(samples) - min(samples)) / per[who] * 100.0
                print("%s, %s: %.0f instructions per request (runs: %s)"
                      % (title, who, per[who], ", ".join("%.0f" % x for x in samples)), flush=True)
            rows.append((key, title, plugins, per, spread, sim))
    finally:
        upstream.send_signal(signal.SIGQUIT)
        upstream.wait(timeout=30)
        if args.keep:
            print("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    version = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    lines = [
        "<!-- instructions -->",
        "## Instructions per request (issue 14)",
        "",
        "`bench/instructions.py --requests %d --warmup %d --repeat %d` on %s (%s, %s), %.0f s: each "
        "server under `valgrind --tool=callgrind`, W requests, the counters zeroed, N requests "
        "on the same keep-alive connection, the counters dumped: instructions / N (start-up, "
        "warm-up, the JIT compiler's work and the TLS handshake are not counted); bench/run's "
        "configs; the gateway's worker thread, nginx's one process; the median of %d runs, with "
        "their spread (max − min over the median). `rep movsb` counts once per byte, so large "
        "copies weigh more here than in time."
        % (args.requests, args.warmup, args.repeat, datetime.date.today().isoformat(), cpu,
           version, time.monotonic() - started, args.repeat),
        "",
        "| scenario | sluice | nginx (+Lua) | sluice / nginx | spread of the runs (sluice / peer) |",
        "|---|--:|--:|--:|--:|",
    ]
    for key, title, plugins, per, spread, _ in rows:
        peer_key = "nginx+Lua" if plugins else "nginx"
        peer = per[peer_key]
        lines.append("| %s | %s | %s | %.2f× | %.1f%% / %.1f%% |" % (
            title, "{:,.0f}".format(per["sluice"]), "{:,.0f}".format(peer), per["sluice"] / peer,
            spread["sluice"], spread[peer_key]))
    by = {k: per for k, _, _, per, _, _ in rows}
    num = "{:,.0f}".format
    if "plain" in by and "lua1" in by:
        text = "Derived: the first Lua plugin costs %s instructions (nginx+Lua: %s)" % (
            num(by["lua1"]["sluice"] - by["plain"]["sluice"]),
            num(by["lua1"]["nginx+Lua"] - by["plain"]["nginx"]))
        if "lua10" in by:
            text += "; each further one %s (nginx+Lua: %s)" % (
                num((by["lua10"]["sluice"] - by["lua1"]["sluice"]) / 9),
                num((by["lua10"]["nginx+Lua"] - by["lua1"]["nginx+Lua"]) / 9))
        lines += ["", text + "."]
    if args.cache:
        lines += ["", "With `--cache` (valgrind's simulated caches and branch predictor), per "
                  "request, sluice / nginx (+Lua):", "",
                  "| scenario | " + " | ".join(name for name, _ in CACHE_EVENTS) + " |",
                  "|---|" + "--:|" * len(CACHE_EVENTS)]
        for key, title, plugins, _, _, sim in rows:
            peer = sim["nginx+Lua" if plugins else "nginx"]
            lines.append("| %s | %s |" % (title, " | ".join(
                "{:,.0f} / {:,.0f}".format(a, b) for a, b in zip(sim["sluice"], peer))))
    lines += ["", "<!-- /instructions -->"]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_results:
        write_section("instructions", text)


if __name__ == "__main__":
    main()
