#!/usr/bin/env python3
"""Reload benchmark (issue 5): time from a config file change to serving it, for a config with
10,000 routes, 10,000 plugin instances and 100 custom (Lua) plugins; RSS before and after; and
failed requests while the file is rewritten once a second under load.

Usage: bench/reload.py [--quick] [--binary target/release/proxy]
Writes its report between the <!-- reload --> markers of bench/RESULTS.md (appends them if
missing) and prints it. Pinning as bench/run: the gateway on core 0, wrk, nginx and this script
on core 1."""

import argparse
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

HANDLER = """local P = {{ PRIORITY = {prio}, VERSION = "1.0.0" }}
function P:access(conf)
  kong.service.request.set_header(conf.header, conf.value)
end
return P
"""
SCHEMA = """return {{
  name = "{name}",
  fields = {{
    {{ config = {{ type = "record", fields = {{
      {{ header = {{ type = "string", default = "x-lua-{i}" }} }},
      {{ value = {{ type = "string", default = "v" }} }},
      {{ ttl = {{ type = "integer", default = 60, between = {{ 1, 3600 }} }} }},
    }} }} }},
  }},
}}
"""


def block(text, indent):
    pad = " " * indent
    return "\n".join(pad + line if line.strip() else "" for line in text.rstrip("\n").split("\n"))


def config(upstream_port, routes, plugins, variant):
    out = ['_format_version: "3.0"', "custom_plugins:"]
    for i in range(plugins):
        name = "lua-%d" % i
        out.append("  - name: %s" % name)
        out.append("    handler: |2")
        out.append(block(HANDLER.format(prio=1000 + i), 6))
        out.append("    schema: |2")
        out.append(block(SCHEMA.format(name=name, i=i), 6))
    out += ["services:", "  - name: up", '    url: "http://127.0.0.1:%d"' % upstream_port, "    routes:"]
    for i in range(routes):
        out.append("      - name: r%d" % i)
        out.append('        paths: ["/r%d/"]' % i)
        if i % 3 == 0:
            out.append('        hosts: ["h%d.example.test"]' % i)
        out.append("        plugins:")
        out.append("          - name: lua-%d" % (i % plugins))
        out.append('            config: {value: "v%d"}' % variant)
    out.append("      - name: marker")
    out.append('        paths: ["/marker-%d"]' % variant)
    return "\n".join(out) + "\n"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(port, path, timeout=5):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def wait(cond, limit, what):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.002)
    raise SystemExit("timed out waiting for " + what)


def write_atomically(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def write_section(marker, text):
    """Replaces the `<!-- marker -->` ... `<!-- /marker -->` block of RESULTS.md with `text`
    (which carries the markers), or appends it."""
    results = os.path.join(HERE, "RESULTS.md")
    current = open(results).read() if os.path.exists(results) else ""
    pattern = r"<!-- %s -->.*<!-- /%s -->\n?" % (marker, marker)
    if re.search(pattern, current, flags=re.S):
        current = re.sub(pattern, lambda _: text, current, flags=re.S)
    else:
        current = current.rstrip("\n") + "\n\n" + text
    with open(results, "w") as f:
        f.write(current)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/proxy"))
    args = ap.parse_args()
    # This harness (writing the file, polling for the change) runs beside wrk and nginx on
    # core 1, not on the gateway's core, whose time it would otherwise take.
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})
    routes, plugins = 10000, 100
    rounds = 3 if args.quick else 7
    load_seconds = 10 if args.quick else 60

    tmp = tempfile.mkdtemp(prefix="sluice-reload.")
    procs = []
    try:
        up_port, px_port, admin_port = free_port(), free_port(), free_port()
        with open(os.path.join(tmp, "up.conf"), "w") as f:
            f.write(
                "worker_processes 1; daemon off; pid %s/up.pid; error_log %s/up.err;\n"
                "events {}\nhttp { access_log off; server { listen 127.0.0.1:%d; "
                'location / { return 200 "ok\\n"; } } }\n' % (tmp, tmp, up_port)
            )
        procs.append(subprocess.Popen(["taskset", "-c", "1", "nginx", "-c", os.path.join(tmp, "up.conf"), "-p", tmp],
                                      stderr=subprocess.DEVNULL))
        cfg_path = os.path.join(tmp, "kong.yaml")
        texts = [config(up_port, routes, plugins, v) for v in (1, 2)]
        write_atomically(cfg_path, texts[0])
        started = time.monotonic()
        proxy = subprocess.Popen(
            ["taskset", "-c", "0", args.binary, "--config", cfg_path, "--listen", "127.0.0.1:%d" % px_port,
             "--listen-tls", "off",
             "--workers", "1", "--admin-listen", "127.0.0.1:%d" % admin_port, "--no-access-log"],
            stderr=open(os.path.join(tmp, "proxy.err"), "w"))
        procs.append(proxy)
        wait(lambda: get(px_port, "/marker-1")[0] == 200, 120, "the proxy to serve")
        startup = time.monotonic() - started
        # Touch every plugin once so the worker VM has loaded them.
        for i in range(0, routes, 97):
            get(px_port, "/r%d/x" % i)
        rss_before = rss_mib(proxy.pid)

        applies = []
        for n in range(rounds):
            variant = 2 if n % 2 == 0 else 1
            t0 = time.monotonic()
            write_atomically(cfg_path, texts[variant - 1])
            wait(lambda: get(px_port, "/marker-%d" % variant)[0] == 200, 60, "the new config")
            applies.append((time.monotonic() - t0) * 1000.0)
        rss_after = rss_mib(proxy.pid)
        status = json.loads(get(admin_port, "/status")[1])
        compile_ms = status["config"]["last_attempt"]["duration_ms"]

        # Reload once a second under load.
        lua = os.path.join(tmp, "paths.lua")
        with open(lua, "w") as f:
            # Every third route also requires its host (see config()).
            f.write("local i = 0\nrequest = function()\n  i = (i + 7) %% %d\n"
                    "  local headers = nil\n"
                    "  if i %% 3 == 0 then headers = { Host = 'h' .. i .. '.example.test' } end\n"
                    "  return wrk.format('GET', '/r' .. i .. '/x', headers)\nend\n" % routes)
        wrk = subprocess.Popen(["taskset", "-c", "1", "wrk", "-t1", "-c32", "-d%ds" % load_seconds, "-s", lua,
                                "http://127.0.0.1:%d" % px_port], stdout=subprocess.PIPE, text=True)
        reloads = 0
        end = time.monotonic() + load_seconds - 1
        while time.monotonic() < end:
            write_atomically(cfg_path, texts[reloads % 2])
            reloads += 1
            time.sleep(1)
        out, _ = wrk.communicate(timeout=load_seconds + 30)
        total = re.search(r"(\d+) requests in", out)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        failed = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(x) for x in sock.groups()) if sock else 0)
        status = json.loads(get(admin_port, "/status")[1])
        generation = status["config"]["generation"]
        rss_end = rss_mib(proxy.pid)

        cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                             capture_output=True, text=True).stdout.strip()
        report = [
            "<!-- reload -->",
            "## Reload (issue 5): %s" % ("smoke run" if args.quick else "full run"),
            "",
            "`bench/reload.py%s` on %s, %d cores (%s). Config: %d routes, %d plugin instances of %d "
            "custom Lua plugins (file of %.1f MiB). The gateway on core 0 (`--workers 1`), wrk, "
            "the upstream nginx and the script on core 1." % (" --quick" if args.quick else "",
                                               datetime.date.today().isoformat(), os.cpu_count(), cpu,
                                               routes, routes, plugins, len(texts[0]) / 1048576.0),
            "",
            "| measure | value | target |",
            "|---|---|---|",
            "| start-up to serving | %.0f ms | |" % (startup * 1000),
            "| file change to serving, median of %d (min–max) | %.0f ms (%.0f–%.0f) | ≤ 100 ms (issue 15) |" % (
                rounds, statistics.median(applies), min(applies), max(applies)),
            "| of which parse + validate + compile (last) | %.0f ms | |" % compile_ms,
            "| RSS after start / after %d reloads | %.0f MiB / %.0f MiB | |" % (rounds, rss_before, rss_after),
            "| requests during %d s of load with a reload every second | %s | |" % (
                load_seconds, total.group(1) if total else "?"),
            "| failed requests (non-2xx + socket errors) while reloading | %d (%d reloads applied) | 0 |" % (
                failed, reloads),
            "| RSS after those %d reloads | %.0f MiB | |" % (reloads, rss_end),
            "",
            "<!-- /reload -->",
        ]
        text = "\n".join(report) + "\n"
        print(text)
        write_section("reload", text)
        if generation < rounds:
            print("warning: generation %d after %d reloads" % (generation, rounds), file=sys.stderr)
    finally:
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=10)
            except Exception:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
