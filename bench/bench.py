#!/usr/bin/env python3
"""The benchmark orchestrator behind bench/run (see bench/README.md). Standard library only.

It starts on loopback an upstream nginx (a small fixed body), the gateway and its peers (nginx,
nginx+Lua), pinned with taskset: everything under test on one core, the upstream and wrk on
another. For each group of contenders it alternates short wrk runs (A B C ... A B C ...) for a
few rounds, reads CPU time and RSS of the server under test from /proc, and reports medians and
per-round ratios as a markdown table, also written to bench/RESULTS.md.
"""

import argparse
import datetime
import http.client
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import ssl
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import configs

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
CLK_TCK = os.sysconf("SC_CLK_TCK")

ROUTES = 10000  # scenario 4's route count
LUA_MANY = 10  # scenario 3's plugin count


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# /proc readings


def proc_stat(pid):
    """(utime + stime in seconds, start time in ticks) of one process, or None if gone (or a
    zombie: where PID 1 does not reap orphans, they stay listed)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    # fields[0] is field 3 (state): utime is field 14, stime 15, starttime 22
    return (int(fields[11]) + int(fields[12])) / CLK_TCK, int(fields[19])


def children_map():
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree(pid):
    """pid and all its descendants (nginx: master and worker)."""
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def tree_cpu(pid):
    return sum((proc_stat(p) or (0.0, 0))[0] for p in tree(pid))


def tree_rss_kib(pid):
    total = 0
    for p in tree(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_times():
    """Per-core jiffies from /proc/stat: {core: (busy, steal, total)}."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+) (.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()]
                user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
                busy = user + nice + system + irq + softirq
                out[int(m.group(1))] = (busy, steal, busy + idle + iowait + steal)
    return out


def core_share(before, after, core):
    """(busy %, steal %) of one core between two cpu_times() readings."""
    if core not in before or core not in after:
        return None, None
    b0, s0, t0 = before[core]
    b1, s1, t1 = after[core]
    total = max(t1 - t0, 1)
    return 100.0 * (b1 - b0) / total, 100.0 * (s1 - s0) / total


# ---------------------------------------------------------------------------------------------
# Processes: everything started is stopped by pid


class Procs:
    def __init__(self):
        self.items = []  # (name, Popen, log file)
        self.lock = threading.Lock()
        self.critical = False
        self.pending = False

    def start(self, name, argv, cpu, log_path, env=None):
        cmd = (["taskset", "-c", str(cpu)] if cpu is not None else []) + argv
        logf = open(log_path, "ab")
        # a stop signal between the fork and the bookkeeping waits (see on_signal), so whatever
        # starts is on the list (blocking the signals instead would pass the mask to the child)
        self.critical = True
        try:
            p = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a terminal's Ctrl-C reaches only us; we stop them
            )
            with self.lock:
                self.items.append((name, p, logf))
        finally:
            self.critical = False
        if self.pending:
            raise KeyboardInterrupt
        return p

    def stop(self, p, timeout=10):
        """SIGTERM, then SIGKILL after `timeout` s; then any of its children still left."""
        # remember the whole tree first (with start times, so a reused pid is never hit)
        family = [(q, proc_stat(q)) for q in tree(p.pid) if q != p.pid]
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        deadline = time.monotonic() + timeout
        for q, st in family:
            while st and proc_stat(q) and proc_stat(q)[1] == st[1]:
                if time.monotonic() > deadline:
                    try:
                        os.kill(q, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    break
                time.sleep(0.05)
        with self.lock:
            for e in [e for e in self.items if e[1] is p]:
                self.items.remove(e)
                e[2].close()

    def stop_all(self):
        while self.items:
            self.stop(self.items[-1][1])


PROCS = Procs()
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def free_port(taken=set()):  # noqa: B006 (remembers the ports handed out in this run)
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in taken:
            taken.add(port)
            return port


def wait_port(port, proc, log_path, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("exited with %s; log: %s" % (proc.returncode, tail(log_path)))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("port %d not listening after %ds; log: %s" % (port, timeout, tail(log_path)))


def tail(path, n=5):
    try:
        with open(path, errors="replace") as f:
            lines = f.read().strip().splitlines()
        return " | ".join(lines[-n:]) or "(empty)"
    except OSError:
        return "(no log)"


def http_get(port, path="/", host=None, method="GET", body=None, timeout=10, tls=False):
    if tls:
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout,
                                        context=ssl._create_unverified_context())
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"x-in": "hello"}
        if host:
            headers["Host"] = host
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------
# wrk


def parse_duration_us(s):
    m = re.match(r"([\d.]+)(us|ms|s|m|h)$", s)
    if not m:
        return None
    scale = {"us": 1, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}[m.group(2)]
    return float(m.group(1)) * scale


def parse_wrk(out):
    r = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_us"), ("99", "p99_us")):
        m = re.search(r"^\s+%s(?:\.0+)?%%\s+(\S+)" % pct, out, re.M)
        if m:
            r[key] = parse_duration_us(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    return r


# ---------------------------------------------------------------------------------------------
# Contenders and groups


class Contender:
    """One server (or one mode of a shared server) measured in turn with the others of its group."""

    def __init__(self, key, label, kind, config="", port=None, plugins=0, requests=None,
                 admin=False, reload_texts=None, tls=None):
        self.key, self.label, self.kind, self.port = key, label, kind, port
        self.tls = tls  # (cert, key) paths: the contender terminates TLS on `port`
        self.config = config  # text of the proxy's YAML or nginx's conf
        self.plugins = plugins
        self.requests = requests  # path of a "HOST PATH" list, for the wrk script
        self.admin = admin
        self.reload_texts = reload_texts  # configs POSTed alternately during each run
        self.admin_port = None
        self.proc = None
        self.status = "ok"  # or "not supported yet" / "failed: ..."
        self.detail = ""  # why, when not ok
        self.runs = []  # one dict per round
        self.argv = None
        self.reloads = []  # (http status or error, seconds) per POST, all rounds

    @property
    def ok(self):
        return self.status == "ok"


class Group:
    def __init__(self, name, title, contenders):
        self.name, self.title, self.contenders = name, title, contenders


def make_groups(ctx, only):
    up = ctx.upstream_port
    req_file = os.path.join(ctx.tmp, "requests-%d.txt" % ROUTES)
    with open(req_file, "w") as f:
        f.write(configs.request_list(ROUTES))

    def proxy(key, label, config, **kw):
        return Contender(key, label, "proxy", config, port=free_port(), **kw)

    def nginx(key, label, plugins=0):
        port = free_port()
        return Contender(key, label, "nginx", configs.nginx_peer(ctx.tmp, key, port, up, plugins),
                         port=port, plugins=plugins)

    many = LUA_MANY
    groups = [
        Group("lua", "scenarios 1-3: plain proxy, one and ten Lua plugins", [
            proxy("proxy-plain", "sluice", configs.kong_plain(up)),
            nginx("nginx-plain", "nginx proxy_pass"),
            proxy("proxy-lua1", "sluice, 1 Lua plugin", configs.kong_plain(up, 1), plugins=1),
            nginx("nginx-lua1", "nginx+Lua, 1 plugin", 1),
            proxy("proxy-lua%d" % many, "sluice, %d Lua plugins" % many,
                  configs.kong_plain(up, many), plugins=many),
            nginx("nginx-lua%d" % many, "nginx+Lua, %d plugins" % many, many),
        ]),
        Group("routes", "scenario 4: %d routes vs 1 route" % ROUTES, [
            proxy("proxy-routes", "sluice, %s routes" % fmt_int(ROUTES),
                  configs.kong_routes(up, ROUTES), requests=req_file),
            proxy("proxy-1route", "sluice, 1 route", configs.kong_plain(up), requests=req_file),
        ]),
        bundled_group(ctx),
        https_group(ctx),
        reload_group(ctx, req_file),
        callout_group(ctx) if (not only or "callout" in only) else None,
    ]
    return [g for g in groups if g and (not only or g.name in only)]


def callout_group(ctx):
    """Scenarios 8-9, plugins that call out: a Lua plugin that does one Redis GET per request
    (resty.redis over a kept-alive connection, to a redis-server on the load core), and one
    that does one HTTP request per request (resty.http's request_uri to the upstream nginx),
    against nginx+Lua running the same handler code (nginx_callout.lua)."""
    up = ctx.upstream_port
    redis = start_redis(ctx)

    def pair(kind, port):
        nport = free_port()
        return [
            Contender("proxy-%s" % kind, "sluice, Lua plugin + one %s call" % kind.upper(),
                      "proxy", configs.kong_callout(up, kind, port), port=free_port(), plugins=1),
            Contender("nginx-%s" % kind, "nginx+Lua, the same + one %s call" % kind.upper(),
                      "nginx", configs.nginx_peer(ctx.tmp, "nginx-%s" % kind, nport, up, 1,
                                                  callout=(kind, port)),
                      port=nport, plugins=1),
        ]

    return Group("callout", "scenarios 8-9: a Lua plugin calling Redis or HTTP per request",
                 pair("redis", redis) + pair("http", up))


def start_redis(ctx):
    """A redis-server on the load core, holding the key the Redis scenario reads (one per run,
    shared by the groups that need it)."""
    if getattr(ctx, "redis_port", None):
        return ctx.redis_port
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", ctx.tmp]
    ctx.record("redis (load core)", ["taskset", "-c", str(ctx.args.load_cpu)] + argv)
    p = PROCS.start("redis", argv, ctx.args.load_cpu, os.path.join(ctx.tmp, "redis.log"))
    wait_port(port, p, os.path.join(ctx.tmp, "redis.log"))
    subprocess.run(["redis-cli", "-p", str(port), "SET", "bench-key", "hello"], check=True,
                   capture_output=True)
    ctx.redis_port = port
    return port


def reload_group(ctx, req_file):
    """Scenario 5 (reload under load): two gateways with the 10,000-route config, measured
    alternately: one left alone, one with its admin API, to which the bench POSTs /config once a
    second during each of its runs (the same config, route r0 given an extra path in every other
    POST, so every POST applies). Two processes, so the steady one never carries the effects of
    earlier reloads (memory, cold caches of a new snapshot)."""
    up = ctx.upstream_port
    base = configs.kong_routes(up, ROUTES)
    variant = configs.kong_routes(up, ROUTES, variant=1)
    every = ctx.args.reload_interval
    return Group("reload", "scenario 5: reload under load (POST /config every %gs)" % every, [
        Contender("proxy-steady", "sluice, %s routes, no reload" % fmt_int(ROUTES), "proxy",
                  base, port=free_port(), requests=req_file),
        Contender("proxy-reload", "sluice, %s routes, POST /config every %gs"
                  % (fmt_int(ROUTES), every), "proxy", base, port=free_port(),
                  requests=req_file, admin=True, reload_texts=[variant, base]),
    ])


def bundled_group(ctx):
    """Scenario 6, bundled plugins as Kong publishes them: 100 routes and 100 consumers, with
    no plugin, key-auth, and key-auth + rate-limiting (local). The per-plugin CPU is the
    difference in CPU per request between neighbours."""
    up = ctx.upstream_port
    req_file = os.path.join(ctx.tmp, "requests-auth.txt")
    with open(req_file, "w") as f:
        f.write(configs.auth_request_list())
    redis = start_redis(ctx)
    on_redis = "policy: redis, redis: {host: 127.0.0.1, port: %d}" % redis
    rl = ("key-auth", "rate-limiting")
    variants = [
        ("proxy-auth-none", "sluice, 100 routes/consumers, no plugin", (), ""),
        ("proxy-auth-key", "sluice, + key-auth", ("key-auth",), ""),
        ("proxy-auth-rl", "sluice, + key-auth + rate-limiting", rl, "policy: local"),
        ("proxy-auth-rl-redis", "sluice, + key-auth + rate-limiting (redis, sync_rate -1)", rl,
         on_redis),
        ("proxy-auth-rl-redis-sync", "sluice, + key-auth + rate-limiting (redis, sync_rate 1)",
         rl, on_redis + ", sync_rate: 1"),
    ]
    return Group("bundled", "scenario 6: key-auth and rate-limiting, 100 routes and consumers", [
        Contender(key, label, "proxy", configs.kong_auth(up, 100, plugins, policy),
                  port=free_port(), requests=req_file)
        for key, label, plugins, policy in variants
    ])


def https_group(ctx):
    """Scenario 7: TLS termination (Kong publishes HTTPS figures): the gateway and nginx serve
    the same certificate (RSA 2048) over HTTP/1.1 to wrk's keep-alive connections."""
    crt, key = configs.bench_cert(ctx.tmp)
    up = ctx.upstream_port
    port = free_port()
    return Group("https", "scenario 7: HTTPS termination, same certificate", [
        Contender("proxy-https", "sluice, HTTPS", "proxy", configs.kong_plain(up),
                  port=free_port(), tls=(crt, key)),
        Contender("nginx-https", "nginx, HTTPS", "nginx",
                  configs.nginx_peer(ctx.tmp, "nginx-https", port, up, tls=(crt, key)),
                  port=port, tls=(crt, key)),
    ])


class Comparison:
    def __init__(self, num, title, a, b, ratio_label):
        self.num, self.title, self.a, self.b, self.ratio_label = num, title, a, b, ratio_label


COMPARISONS = [
    Comparison("1", "plain proxy, 1 route", "proxy-plain", "nginx-plain", "sluice / nginx"),
    Comparison("2", "one Lua plugin", "proxy-lua1", "nginx-lua1", "sluice / nginx+Lua"),
    Comparison("3", "%d Lua plugins" % LUA_MANY, "proxy-lua%d" % LUA_MANY,
               "nginx-lua%d" % LUA_MANY, "sluice / nginx+Lua"),
    Comparison("4", "10,000 routes vs 1 route (sluice vs itself)", "proxy-routes",
               "proxy-1route", "10,000 routes / 1 route"),
    Comparison("5", "reload under load (sluice vs itself)", "proxy-reload", "proxy-steady",
               "reloading / steady"),
    Comparison("6a", "key-auth, 100 routes and consumers", "proxy-auth-key", "proxy-auth-none",
               "key-auth / none"),
    Comparison("6b", "+ rate-limiting (local)", "proxy-auth-rl", "proxy-auth-key",
               "+ rate-limiting / key-auth"),
    Comparison("6c", "+ rate-limiting (redis, sync_rate -1)", "proxy-auth-rl-redis",
               "proxy-auth-key", "+ rate-limiting / key-auth"),
    Comparison("6d", "+ rate-limiting (redis, sync_rate 1 s)", "proxy-auth-rl-redis-sync",
               "proxy-auth-key", "+ rate-limiting / key-auth"),
    Comparison("7", "HTTPS termination, same certificate", "proxy-https", "nginx-https",
               "sluice / nginx"),
    Comparison("8", "Lua plugin + one Redis GET (resty.redis, keepalive)", "proxy-redis",
               "nginx-redis", "sluice / nginx+Lua"),
    Comparison("9", "Lua plugin + one HTTP call (resty.http)", "proxy-http", "nginx-http",
               "sluice / nginx+Lua"),
]


# ---------------------------------------------------------------------------------------------
# Running


class Ctx:
    def __init__(self, args, tmp):
        self.args, self.tmp = args, tmp
        self.upstream_port = free_port()
        self.commands = []  # (what, command line) for RESULTS.md
        self.upstream_proc = None
        self.notes = []

    def record(self, what, argv, env=None):
        line = " ".join(a if "$" in a else shlex.quote(a) for a in argv).replace(self.tmp, "$TMP")
        line = line.replace(ROOT + "/", "")
        line = re.sub(r"--listen 127\.0\.0\.1:\d+", "--listen 127.0.0.1:$PORT", line)
        line = re.sub(r"--admin-listen 127\.0\.0\.1:\d+", "--admin-listen 127.0.0.1:$ADMIN_PORT", line)
        if env:
            line = " ".join("%s=%s" % kv for kv in env.items()).replace(self.tmp, "$TMP") + " " + line
        if (what, line) not in self.commands:
            self.commands.append((what, line))


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def start_upstream(ctx):
    conf = write(os.path.join(ctx.tmp, "nginx-upstream.conf"),
                 configs.nginx_upstream(ctx.tmp, ctx.upstream_port))
    argv = ["nginx", "-p", ctx.tmp, "-c", conf, "-e", os.path.join(ctx.tmp, "upstream.error.log")]
    ctx.record("upstream (load core)", ["taskset", "-c", str(ctx.args.load_cpu)] + argv)
    log_path = os.path.join(ctx.tmp, "upstream.log")
    p = PROCS.start("upstream", argv, ctx.args.load_cpu, log_path)
    ctx.upstream_proc = p
    wait_port(ctx.upstream_port, p, os.path.join(ctx.tmp, "upstream.error.log"))
    status, _, body = http_get(ctx.upstream_port)
    if status != 200 or body != b"ok\n":
        raise RuntimeError("upstream answers %s %r" % (status, body))
    return p


def proxy_check(ctx, path):
    r = subprocess.run([ctx.args.proxy, "check", path], capture_output=True, text=True)
    if r.returncode == 0:
        return None
    lines = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
    first = lines[0] if lines else "exit %d" % r.returncode
    first = first.replace(ctx.tmp + "/", "")
    if "not supported" in first or "not available" in first:
        return "not supported yet", "`proxy check` rejects the config: " + first
    return "failed: config rejected", "`proxy check`: " + first


def start_contender(ctx, c):
    if c.kind == "proxy":
        path = write(os.path.join(ctx.tmp, c.key + ".yaml"), c.config)
        problem = proxy_check(ctx, path)
        if problem:
            c.status, c.detail = problem
            log("%s: %s: %s" % (c.key, c.status, c.detail))
            return
        admin = "off"
        if c.admin:
            c.admin_port = free_port()
            admin = "127.0.0.1:%d" % c.admin_port
        argv = [ctx.args.proxy, "--config", path, "--listen", "127.0.0.1:%d" % c.port,
                "--listen-tls", "off", "--workers", "1", "--admin-listen", admin, "--no-access-log",
                "--shutdown-timeout", "1"]
        if c.tls:
            # Plain HTTP on a spare port; TLS (the certificate as default) on the measured one.
            argv[3:7] = ["--listen", "127.0.0.1:%d" % free_port(), "--listen-tls",
                         "127.0.0.1:%d" % c.port]
            argv += ["--ssl-cert", c.tls[0], "--ssl-cert-key", c.tls[1]]
        log_path = os.path.join(ctx.tmp, c.key + ".log")
    else:
        path = write(os.path.join(ctx.tmp, c.key + ".conf"), c.config)
        log_path = os.path.join(ctx.tmp, c.key + ".error.log")
        argv = ["nginx", "-p", ctx.tmp, "-c", path, "-e", log_path]
    c.argv = argv
    ctx.record(c.label + " (server core)", ["taskset", "-c", str(ctx.args.server_cpu)] + argv)
    try:
        c.proc = PROCS.start(c.key, argv, ctx.args.server_cpu, log_path + ".out")
        wait_port(c.port, c.proc, log_path)
        if c.admin_port:
            wait_port(c.admin_port, c.proc, log_path)
        sanity(ctx, c)
    except Exception as e:  # noqa: BLE001 (reported in the table, the bench goes on)
        c.status, c.detail = "failed", str(e).replace(ctx.tmp + "/", "")
        log("%s: failed: %s" % (c.key, c.detail))


def sanity(ctx, c):
    """Checks that the contender does what the scenario says before measuring it."""
    if c.requests:
        with open(c.requests) as f:
            reqs = [line.split() for line in f if line.strip()]
        step = max(1, len(reqs) // ctx.args.sanity_sample)
        bad = []
        for host, path in reqs[::step]:
            status, _, _ = http_get(c.port, path, host)
            if status != 200:
                bad.append("%s %s%s" % (status, host, path))
        if bad:
            raise RuntimeError("%d of %d sampled requests not 200, e.g. %s"
                               % (len(bad), len(reqs[::step]), bad[:3]))
        return
    status, headers, body = http_get(c.port, tls=bool(c.tls))
    if status != 200 or body != b"ok\n":
        raise RuntimeError("answers %s %r" % (status, body[:100]))
    if c.plugins:
        if headers.get("x-out") != "1" or headers.get("x-up-seen") != "hello":
            raise RuntimeError("plugins did not run: x-out=%r, upstream saw x-up=%r"
                               % (headers.get("x-out"), headers.get("x-up-seen")))
    elif "x-out" in headers or "x-up-seen" in headers:
        raise RuntimeError("unexpected plugin headers %r" % headers)


def wrk_argv(ctx, c, duration):
    argv = ["wrk", "-t", "1", "-c", str(ctx.args.connections), "-d", "%ds" % duration,
            "--latency", "--timeout", "5s"]
    env = None
    if c.requests:
        argv += ["-s", os.path.join(BENCH, "templates", "wrk-requests.lua")]
        env = {"BENCH_REQUESTS": c.requests}
    else:
        argv += ["-H", "x-in: hello"]
    argv.append("%s://127.0.0.1:%d/" % ("https" if c.tls else "http", c.port))
    return argv, env


def run_wrk(ctx, c, duration, record=True):
    argv, env = wrk_argv(ctx, c, duration)
    if record:
        what = ("load for scenarios 4-5: wrk cycling through the route list" if c.requests
                else "load for scenarios 1-3: wrk")
        shown = argv[:-1] + ["http://127.0.0.1:$PORT/"]
        ctx.record(what + " (load core)", ["taskset", "-c", str(ctx.args.load_cpu)] + shown, env)
    full_env = dict(os.environ, **(env or {}))
    log_path = os.path.join(ctx.tmp, "wrk.out")
    with open(log_path, "w"):
        pass
    p = PROCS.start("wrk", argv, ctx.args.load_cpu, log_path, env=full_env)
    try:
        p.wait(timeout=duration + 60)
    finally:
        PROCS.stop(p)
    with open(log_path) as f:
        out = f.read()
    if p.returncode != 0 or "Requests/sec" not in out:
        raise RuntimeError("wrk failed (%s): %s" % (p.returncode, out.strip()[-300:]))
    return out


class ReloadLoop(threading.Thread):
    """POSTs the contender's configs to its admin API, alternately, every `interval` seconds."""

    def __init__(self, c, interval):
        super().__init__(daemon=True)
        self.c, self.interval = c, interval
        self.stopping = threading.Event()
        self.results = []  # (status or error text, seconds)

    def run(self):
        i = 0
        while not self.stopping.wait(self.interval if i else 0.5):
            text = self.c.reload_texts[i % len(self.c.reload_texts)].encode()
            i += 1
            t0 = time.monotonic()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.c.admin_port, timeout=60)
                conn.request("POST", "/config", body=text, headers={"Content-Type": "text/yaml"})
                r = conn.getresponse()
                r.read()
                conn.close()
                self.results.append((r.status, time.monotonic() - t0))
            except OSError as e:
                self.results.append((str(e), time.monotonic() - t0))

    def stop(self):
        self.stopping.set()
        self.join()


def own_cpu():
    """CPU seconds of this orchestrator plus its reaped children (wrk)."""
    s, k = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + k.ru_utime + k.ru_stime


def measure(ctx, c, duration, rnd):
    pid = c.proc.pid
    cpu0, times0 = tree_cpu(pid), cpu_times()
    load0 = own_cpu() + tree_cpu(ctx.upstream_proc.pid)
    t0 = time.monotonic()
    loop = None
    if c.reload_texts:
        variant = write(os.path.join(ctx.tmp, c.key + "-variant.yaml"), c.reload_texts[0])
        ctx.record("scenario 5: during the reloading runs, bench.py POSTs the variant and the "
                   "original config alternately, every %gs; each POST is equivalent to"
                   % ctx.args.reload_interval,
                   ["curl", "-X", "POST", "-H", "Content-Type: text/yaml", "--data-binary",
                    "@" + variant, "http://127.0.0.1:$ADMIN_PORT/config"])
        loop = ReloadLoop(c, ctx.args.reload_interval)
        loop.start()
    try:
        out = run_wrk(ctx, c, duration)
    finally:
        if loop:
            loop.stop()
    cpu1, times1 = tree_cpu(pid), cpu_times()
    wall = time.monotonic() - t0
    load1 = own_cpu() + tree_cpu(ctx.upstream_proc.pid)
    w = parse_wrk(out)
    busy, steal = core_share(times0, times1, ctx.args.server_cpu)
    load_busy, _ = core_share(times0, times1, ctx.args.load_cpu)
    run = {
        "round": rnd,
        "rps": w.get("rps"),
        "p50_us": w.get("p50_us"),
        "p99_us": w.get("p99_us"),
        "requests": w.get("requests", 0),
        "failed": w["socket_errors"] + w["non2xx"],
        "socket_errors": w["socket_errors"],
        "non2xx": w["non2xx"],
        "cpu_s": cpu1 - cpu0,
        "cpu_us_per_req": (cpu1 - cpu0) * 1e6 / w["requests"] if w.get("requests") else None,
        "rss_mib": tree_rss_kib(pid) / 1024.0,
        "server_pct": 100.0 * (cpu1 - cpu0) / wall,  # the server's share of its core
        "load_pct": 100.0 * (load1 - load0) / wall,  # wrk + upstream + this script, on theirs
        "server_busy": busy,  # the server core's busy time, all processes
        "server_steal": steal,
        "load_busy": load_busy,  # the load core's busy time, all processes
    }
    if loop:
        run["reloads"] = loop.results
        c.reloads.extend(loop.results)
    if c.proc.poll() is not None:
        c.status, c.detail = "failed", "exited during the run (%s)" % c.proc.returncode
    return run


def run_group(ctx, g):
    log("group %s: starting %d contenders" % (g.name, len(g.contenders)))
    for c in g.contenders:
        start_contender(ctx, c)
    live = [c for c in g.contenders if c.ok]
    try:
        for c in live:
            log("warm-up %s (%ds)" % (c.key, ctx.args.warmup))
            run_wrk(ctx, c, ctx.args.warmup, record=False)
        for rnd in range(1, ctx.args.rounds + 1):
            # alternate; each round starts one further along, so no contender always goes first
            k = (rnd - 1) % max(len(live), 1)
            for c in live[k:] + live[:k]:
                if not c.ok:
                    continue
                run = measure(ctx, c, ctx.args.duration, rnd)
                c.runs.append(run)
                log("round %d/%d %-14s %9s req/s  p99 %8s  %6s us/req  server %3.0f%%  load %3.0f%%"
                    "  failed %d%s" % (
                    rnd, ctx.args.rounds, c.key, fmt_int(run["rps"]), fmt_ms(run["p99_us"]),
                    fmt_num(run["cpu_us_per_req"], 1), run["server_pct"], run["load_pct"],
                    run["failed"],
                    "  reloads %d" % len(run.get("reloads", [])) if c.reload_texts else ""))
    finally:
        for c in g.contenders:
            if c.proc:
                PROCS.stop(c.proc)


# ---------------------------------------------------------------------------------------------
# Report


def fmt_int(v):
    return "–" if v is None else "{:,}".format(int(round(v)))


def fmt_num(v, digits=1):
    return "–" if v is None else "%.*f" % (digits, v)


def fmt_ms(us):
    return "–" if us is None else "%.2f ms" % (us / 1000.0)


def fmt_ratio(v):
    return "–" if v is None else "%.2f×" % v


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def paired(a, b, metric):
    """Median over rounds of a[metric] / b[metric], pairing the runs of the same round."""
    bs = {r["round"]: r for r in b.runs}
    ratios = []
    for r in a.runs:
        o = bs.get(r["round"])
        if o and r.get(metric) is not None and o.get(metric):
            ratios.append(r[metric] / o[metric])
    return med(ratios)


def paired_delta(a, b, metric, divide=1):
    """Median over rounds of (a - b) / divide."""
    bs = {r["round"]: r for r in b.runs}
    deltas = [(r[metric] - bs[r["round"]][metric]) / divide for r in a.runs
              if r["round"] in bs and r.get(metric) is not None
              and bs[r["round"]].get(metric) is not None]
    return med(deltas)


METRICS = ("rps", "p50_us", "p99_us", "cpu_us_per_req", "rss_mib")


def summary_row(c):
    if not c.ok and not c.runs:
        return [c.label, c.status] + [""] * 5
    m = {k: med(r[k] for r in c.runs) for k in METRICS}
    failed = sum(r["failed"] for r in c.runs)
    reqs = sum(r["requests"] for r in c.runs)
    row = [c.label, fmt_int(m["rps"]), fmt_ms(m["p50_us"]), fmt_ms(m["p99_us"]),
           fmt_num(m["cpu_us_per_req"]) + " µs", fmt_num(m["rss_mib"]) + " MiB",
           "%s of %s" % (fmt_int(failed), fmt_int(reqs))]
    if not c.ok:
        row[0] += " (%s)" % c.status
    return row


def results_table(contenders):
    rows = ["| # | scenario | contender | req/s | p50 | p99 | CPU / req | RSS | failed req |",
            "|---|---|---|--:|--:|--:|--:|--:|--:|"]
    for cmp in COMPARISONS:
        a, b = contenders.get(cmp.a), contenders.get(cmp.b)
        if not a or not b:
            continue
        first = True
        for c in (a, b):
            rows.append("| %s | %s | %s |" % (cmp.num if first else "", cmp.title if first else "",
                                              " | ".join(summary_row(c))))
            first = False
        if a.runs and b.runs:
            rows.append("| | | **%s** | **%s** | %s | %s | %s | %s | |" % (
                cmp.ratio_label, fmt_ratio(paired(a, b, "rps")), fmt_ratio(paired(a, b, "p50_us")),
                fmt_ratio(paired(a, b, "p99_us")), fmt_ratio(paired(a, b, "cpu_us_per_req")),
                fmt_ratio(paired(a, b, "rss_mib"))))
        else:
            rows.append("| | | **%s** | – | | | | | |" % cmp.ratio_label)
    return "\n".join(rows)


def met(ok):
    return "–" if ok is None else ("**yes**" if ok else "no")


def targets_table(cs):
    g = cs.get
    rows = ["| target | measured | met |", "|---|---|---|"]

    def both(a, b):
        return g(a) and g(b) and g(a).runs and g(b).runs

    def why(*keys):
        for k in keys:
            c = g(k)
            if c is None:
                return "not run"
            if not c.runs:
                return c.status
        return "not measurable"

    if both("proxy-plain", "nginx-plain"):
        r = paired(g("proxy-plain"), g("nginx-plain"), "rps")
        p = paired(g("proxy-plain"), g("nginx-plain"), "p99_us")
        rows.append("| plain proxy ≥ 1.0× nginx's req/s | %s | %s |" % (fmt_ratio(r), met(r >= 1.0)))
        rows.append("| plain proxy p99 ≤ nginx's | %s of nginx's | %s |" % (fmt_ratio(p), met(p <= 1.0)))
    else:
        rows.append("| plain proxy ≥ 1.0× nginx's req/s, p99 ≤ nginx's | %s | – |"
                    % why("proxy-plain", "nginx-plain"))
    if both("proxy-lua1", "nginx-lua1"):
        r = paired(g("proxy-lua1"), g("nginx-lua1"), "rps")
        rows.append("| one Lua plugin ≥ 1.2× nginx+Lua's req/s | %s | %s |" % (fmt_ratio(r), met(r >= 1.2)))
    else:
        rows.append("| one Lua plugin ≥ 1.2× nginx+Lua's req/s | %s | – |"
                    % why("proxy-lua1", "nginx-lua1"))
    many = "proxy-lua%d" % LUA_MANY
    if both(many, "proxy-lua1"):
        d = paired_delta(g(many), g("proxy-lua1"), "cpu_us_per_req", LUA_MANY - 1)
        rows.append("| each extra trivial Lua plugin ≤ 2 µs CPU | %s µs | %s |" % (fmt_num(d, 2), met(d <= 2.0)))
    else:
        rows.append("| each extra trivial Lua plugin ≤ 2 µs CPU | %s | – |" % why(many, "proxy-lua1"))
    if both("proxy-routes", "proxy-1route"):
        r = paired(g("proxy-routes"), g("proxy-1route"), "rps")
        rows.append("| 10,000 routes ≥ 0.95× of 1 route's req/s | %s | %s |" % (fmt_ratio(r), met(r >= 0.95)))
    else:
        rows.append("| 10,000 routes ≥ 0.95× of 1 route's req/s | %s | – |"
                    % why("proxy-routes", "proxy-1route"))
    label = "Redis GET per request: ratio to nginx+Lua ≥ the plain proxy's ratio to nginx (#13)"
    if both("proxy-redis", "nginx-redis") and both("proxy-plain", "nginx-plain"):
        r = paired(g("proxy-redis"), g("nginx-redis"), "rps")
        plain = paired(g("proxy-plain"), g("nginx-plain"), "rps")
        rows.append("| %s | %s vs %s | %s |" % (label, fmt_ratio(r), fmt_ratio(plain), met(r >= plain)))
    else:
        rows.append("| %s | %s | – |" % (label, why("proxy-redis", "nginx-redis", "proxy-plain")))
    return "\n".join(rows)


def derived(cs, args):
    """Per-plugin CPU for both sides, and the reload statistics."""
    g = cs.get
    out = []
    many = "proxy-lua%d" % LUA_MANY
    for side, plain, one, ten in (("sluice", "proxy-plain", "proxy-lua1", many),
                                  ("nginx+Lua", "nginx-plain", "nginx-lua1", "nginx-lua%d" % LUA_MANY)):
        parts = []
        if g(plain) and g(one) and g(plain).runs and g(one).runs:
            parts.append("first plugin %s µs CPU/req (1 plugin − none)"
                         % fmt_num(paired_delta(g(one), g(plain), "cpu_us_per_req"), 2))
        if g(one) and g(ten) and g(one).runs and g(ten).runs:
            parts.append("each further plugin %s µs CPU/req ((%d plugins − 1) / %d)"
                         % (fmt_num(paired_delta(g(ten), g(one), "cpu_us_per_req", LUA_MANY - 1), 2),
                            LUA_MANY, LUA_MANY - 1))
        if not parts:
            why = [g(k).status for k in (one, ten) if g(k) and not g(k).runs]
            parts.append(why[0] if why else "not measured")
        out.append("- %s: %s" % (side, "; ".join(parts)))
    for label, a, b, kong in (("key-auth", "proxy-auth-key", "proxy-auth-none", 22),
                              ("rate-limiting (local)", "proxy-auth-rl", "proxy-auth-key", 17),
                              ("rate-limiting (redis, sync_rate -1)", "proxy-auth-rl-redis",
                               "proxy-auth-key", None),
                              ("rate-limiting (redis, sync_rate 1 s)",
                               "proxy-auth-rl-redis-sync", "proxy-auth-key", None)):
        if g(a) and g(b) and g(a).runs and g(b).runs:
            line = "- %s: %s µs CPU/req here (%s − %s)" % (
                label, fmt_num(paired_delta(g(a), g(b), "cpu_us_per_req"), 2), a, b)
            if kong:
                line += "; Kong 3.10 publishes about %d µs on its hardware" % kong
            out.append(line)
    r, s = g("proxy-reload"), g("proxy-steady")
    if r and r.reloads:
        ok = [t for st, t in r.reloads if isinstance(st, int) and 200 <= st < 300]
        bad = [st for st, t in r.reloads if not (isinstance(st, int) and 200 <= st < 300)]
        line = ("- reload under load: %d POST /config (%d applied, %d failed%s), median %s each"
                % (len(r.reloads), len(ok), len(bad), (": %s" % bad[:3]) if bad else "",
                   fmt_ms(med(ok) * 1e6) if ok else "–"))
        if s and s.runs and r.runs:
            # CPU a reload costs: the run's CPU minus what its requests cost at the steady rate
            steady = {x["round"]: x for x in s.runs}
            per = []
            for x in r.runs:
                st = steady.get(x["round"])
                n = len(x.get("reloads", []))
                if st and n and st["cpu_us_per_req"]:
                    per.append((x["cpu_s"] - st["cpu_us_per_req"] * x["requests"] / 1e6) / n)
            if per:
                line += ", ≈ %s of gateway CPU per reload" % fmt_ms(med(per) * 1e6)
        failed = sum(x["failed"] for x in r.runs)
        line += "; failed requests during reloading runs: %s" % fmt_int(failed)
        out.append(line)
    return "\n".join(out)


def conditions(cs, args):
    runs = [r for c in cs.values() for r in c.runs]
    if not runs:
        return "No runs."

    def col(key):
        return [r[key] for r in runs if r.get(key) is not None]

    server, load = col("server_pct"), col("load_pct")
    busy, lbusy, steal = col("server_busy"), col("load_busy"), col("server_steal")
    lines = [
        "- server core %d: the server under test used %s%% of it (median; min %s%%); the core "
        "was busy %s%% with all processes; CPU steal median %s%%, max %s%%"
        % (args.server_cpu, fmt_num(med(server), 0), fmt_num(min(server), 0),
           fmt_num(med(busy), 0), fmt_num(med(steal), 1), fmt_num(max(steal), 1)),
        "- load core %d: wrk + upstream nginx + this script used %s%% of it (median; max %s%%); "
        "busy %s%% with all processes"
        % (args.load_cpu, fmt_num(med(load), 0), fmt_num(max(load), 0), fmt_num(med(lbusy), 0)),
    ]
    saturated = [r for c in cs.values() for r in c.runs if r["load_pct"] > 90]
    if saturated:
        who = sorted({c.key for c in cs.values() for r in c.runs if r["load_pct"] > 90})
        lines.append("- **the load side was saturated** (over 90%% of its core) in %d run(s) (%s): "
                     "those contenders' req/s are lower bounds (and ratios against them upper "
                     "bounds); CPU / req does not depend on it" % (len(saturated), ", ".join(who)))
    foreign = [b - s for b, s in zip(busy, server)]
    if foreign and med(foreign) > 10:
        lines.append("- **other processes ran on the server core** (median %s%% of it): the "
                     "machine was not quiet; absolute figures are low, ratios less affected"
                     % fmt_num(med(foreign), 0))
    return "\n".join(lines)


def raw_table(cs):
    rows = ["| contender | round | req/s | p50 | p99 | CPU / req | RSS | failed | server CPU | "
            "server core busy | steal | load CPU | load core busy |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for c in cs.values():
        for r in c.runs:
            rows.append("| %s | %d | %s | %s | %s | %s µs | %s MiB | %d | %s%% | %s%% | %s%% | %s%% | %s%% |" % (
                c.key, r["round"], fmt_int(r["rps"]), fmt_ms(r["p50_us"]), fmt_ms(r["p99_us"]),
                fmt_num(r["cpu_us_per_req"]), fmt_num(r["rss_mib"]), r["failed"],
                fmt_num(r["server_pct"], 0), fmt_num(r["server_busy"], 0),
                fmt_num(r["server_steal"], 1), fmt_num(r["load_pct"], 0),
                fmt_num(r["load_busy"], 0)))
    return "\n".join(rows)


def sh(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = "%.0f GiB" % (int(line.split()[1]) / 1024 / 1024)
    rev = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "-C", ROOT, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"])
    return [
        "- cores: %d (%s), %s memory" % (os.cpu_count(), model, mem),
        "- kernel: %s %s" % (platform.system(), platform.release()),
        "- gateway: %s, binary %s (built %s UTC); work tree at commit %s%s" % (
            sh([ARGS.proxy, "--version"]) or "?", ARGS.proxy.replace(ROOT + "/", ""),
            datetime.datetime.fromtimestamp(os.path.getmtime(ARGS.proxy), datetime.timezone.utc)
            .strftime("%Y-%m-%d %H:%M"), rev or "?",
            " with uncommitted changes in src/ or Cargo.*" if dirty else ""),
        "- peers: %s; lua-nginx-module %s (Debian packages); %s" % (
            sh(["nginx", "-v"]).replace("nginx version: ", ""),
            sh(["dpkg-query", "-W", "-f=${Version}", "libnginx-mod-http-lua"]) or "?",
            (sh(["wrk", "-v"]).splitlines() or ["wrk ?"])[0].split(" Copyright")[0].strip()),
    ]


def kept_sections(path):
    """The `<!-- name -->` ... `<!-- /name -->` sections that other scripts (instructions.py,
    memory.py, reload.py) keep in RESULTS.md, to append to a new report instead of losing them."""
    try:
        current = open(path).read()
    except OSError:
        return ""
    sections = re.finditer(r"<!-- ([a-z]+) -->.*?<!-- /\1 -->", current, flags=re.S)
    return "".join("\n" + m.group(0) + "\n" for m in sections)


def report(ctx, cs, started, elapsed):
    a = ctx.args
    mode = "quick (smoke run)" if a.quick else "full"
    cmd = "bench/run" + "".join(" " + shlex.quote(x) for x in a.argv_shown)
    parts = ["# Benchmark results", ""]
    if a.quick:
        parts += ["> **Quick smoke run** (`--quick`: %d round of %d s per contender): it shows that "
                  "the harness works, not where the gateway stands. Replace it with a full run "
                  "(`bench/run`) on a quiet machine." % (a.rounds, a.duration), ""]
    parts += [
        "Generated by `%s` on %s (UTC), %s mode: %d round(s) of %d s per contender (+ %d s "
        "warm-up), %d connections, wrk 1 thread; took %d s (after the build)."
        % (cmd, started.strftime("%Y-%m-%d %H:%M"), mode, a.rounds, a.duration, a.warmup,
           a.connections, elapsed),
        "",
        "## Machine",
        "",
    ] + machine() + [
        "- pinning: servers under test on core %d (`taskset -c %d`, gateway `--workers 1`, nginx "
        "`worker_processes 1`); upstream nginx and wrk on core %d" % (a.server_cpu, a.server_cpu, a.load_cpu),
        "",
        "## Results",
        "",
        "Medians over rounds. Ratio rows are medians of the per-round ratios (each round runs the "
        "contenders back to back), so they need not equal the quotient of the medians above them. "
        "req/s: higher is better; p50, p99, CPU per request (utime + stime of the server's "
        "processes from /proc, divided by requests), RSS (VmRSS after the run, nginx master + "
        "worker): lower is better.",
        "",
        results_table(cs),
        "",
        "## Targets",
        "",
        "Where the gateway stands against the team's targets (the bench is not tuned to meet them).",
        "",
        targets_table(cs),
        "",
        "## Derived",
        "",
        derived(cs, a),
        "",
        "## Conditions during the runs",
        "",
        conditions(cs, a),
        "",
        "## Commands",
        "",
        "Ports are picked free per run; `$TMP` is the run's temporary directory.",
        "",
        "```",
    ]
    parts += ["# %s\n%s" % (what, line) for what, line in ctx.commands]
    parts += ["```", "", "## Every run", "", raw_table(cs), ""]
    notes = ctx.notes + ["%s: %s: %s" % (c.key, c.status, c.detail) for c in cs.values()
                         if not c.ok]
    if notes:
        parts += ["## Notes", ""] + ["- " + n.replace("|", "\\|") for n in notes] + [""]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 round of 3 s per contender, 1 s warm-up")
    p.add_argument("--rounds", type=int, help="rounds per group (default 5; quick 1)")
    p.add_argument("--duration", type=int, help="seconds per measured run (default 10; quick 3)")
    p.add_argument("--warmup", type=int, help="seconds of warm-up per server (default 2; quick 1)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--only", default="", help="comma-separated groups: lua,routes,bundled,https,reload,callout")
    p.add_argument("--server-cpu", type=int, default=0, help="core for the servers under test (0)")
    p.add_argument("--load-cpu", type=int, default=1, help="core for wrk and the upstream (1)")
    p.add_argument("--reload-interval", type=float, default=1.0, help="seconds between POSTs (1)")
    p.add_argument("--sanity-sample", type=int, default=200,
                   help="requests of the route list checked before measuring (200)")
    p.add_argument("--proxy", default=None, help="the gateway binary (default target/dist/proxy, scripts/build-dist)")
    p.add_argument("--no-results", action="store_true", help="do not rewrite bench/RESULTS.md")
    p.add_argument("--results", default=os.path.join(BENCH, "RESULTS.md"), help=argparse.SUPPRESS)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--no-build", action="store_true", help="(bench/run) skip cargo build")
    p.add_argument("--render", metavar="DIR", help="only write the configs to DIR and exit")
    a = p.parse_args(argv)
    a.argv_shown = [x for x in argv if x != "--no-build"]
    a.rounds = a.rounds or (1 if a.quick else 5)
    a.duration = a.duration or (3 if a.quick else 10)
    a.warmup = a.warmup if a.warmup is not None else (1 if a.quick else 2)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    a.proxy = os.path.abspath(a.proxy or os.path.join(target, "dist", "proxy"))
    return a


ARGS = None


def main(argv):
    global ARGS
    args = ARGS = parse_args(argv)
    if args.render:
        for name in configs.render_all(args.render, routes=ROUTES):
            print(os.path.join(args.render, name))
        return 0
    only = [x for x in args.only.split(",") if x]
    cores = sorted(os.sched_getaffinity(0))
    if args.server_cpu not in cores or args.load_cpu not in cores or args.server_cpu == args.load_cpu:
        sys.exit("need two distinct usable cores for --server-cpu %d and --load-cpu %d (have %s)"
                 % (args.server_cpu, args.load_cpu, cores))
    for tool in ("nginx", "wrk", "taskset", "redis-server", "redis-cli"):
        if not shutil.which(tool):
            sys.exit("%s not found: run bench/run, which installs it" % tool)
    if not os.access(args.proxy, os.X_OK):
        sys.exit("%s not found: build it (scripts/build-dist) or pass --proxy" % args.proxy)
    # the orchestrator itself (and the reload POSTs) stays off the server core
    os.sched_setaffinity(0, {args.load_cpu})

    def on_signal(signum, frame):
        if PROCS.critical:
            PROCS.pending = True
        else:
            raise KeyboardInterrupt

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)

    tmp = tempfile.mkdtemp(prefix="sluice-bench.")
    os.makedirs(os.path.join(tmp, "nginx-tmp"))
    write(os.path.join(tmp, "nginx_plugins.lua"), configs.nginx_plugins_lua())
    write(os.path.join(tmp, "nginx_callout.lua"), configs.nginx_callout_lua())
    os.makedirs(os.path.join(tmp, "resty"))
    write(os.path.join(tmp, "resty", "http.lua"), configs.nginx_resty_http_lua())
    ctx = Ctx(args, tmp)
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    contenders = {}
    try:
        log("temporary directory %s; servers on core %d, wrk and upstream on core %d"
            % (tmp, args.server_cpu, args.load_cpu))
        start_upstream(ctx)
        for g in make_groups(ctx, only):
            for c in g.contenders:
                contenders[c.key] = c
            run_group(ctx, g)
    except KeyboardInterrupt:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        log("interrupted: stopping everything")
        PROCS.stop_all()
        return 130
    finally:
        PROCS.stop_all()
        if args.keep:
            log("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    text = report(ctx, contenders, started, time.monotonic() - t0)
    summary = text.split("## Commands")[0]
    print(summary.split("## Results", 1)[1].strip() if "## Results" in summary else summary)
    if not args.no_results:
        write(args.results, text + kept_sections(args.results))
        log("wrote %s" % os.path.relpath(args.results, ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
