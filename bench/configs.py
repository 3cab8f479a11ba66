"""Renders every configuration the benchmark uses: the gateway's declarative files (Kong decK
format) and the nginx peers' configs, from the templates in bench/templates/.

Standard library only. `python3 bench/configs.py DIR` writes them all to DIR with placeholder
ports, for reading.
"""

import json
import os
import random
import re
import subprocess
import sys

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")

# The Debian packages' module files (libnginx-mod-http-ndk, libnginx-mod-http-lua).
NGINX_LUA_MODULES = (
    "/usr/lib/nginx/modules/ndk_http_module.so",
    "/usr/lib/nginx/modules/ngx_http_lua_module.so",
)


def template(name, **values):
    """The template `name` with every `@KEY@` replaced by values[KEY]; all must be given.
    BENCH_HANDLER=FILE replaces the gateway's Lua plugin handler (kong-plugin-handler.lua) by
    FILE, to measure what one PDK function costs (bench/PROFILE.md §0)."""
    path = os.path.join(TEMPLATES, name)
    if name == "kong-plugin-handler.lua" and os.environ.get("BENCH_HANDLER"):
        path = os.environ["BENCH_HANDLER"]
    with open(path) as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace("@%s@" % key, str(value))
    leftover = re.findall(r"@[A-Z_]+@", text)
    if leftover:
        raise ValueError("%s: unfilled placeholders %s" % (name, leftover))
    return text


def q(s):
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(s)


def block(text, indent):
    """A YAML literal block scalar body, indented."""
    pad = " " * indent
    return "\n".join(pad + line if line else "" for line in text.rstrip("\n").split("\n"))


# ---------------------------------------------------------------------------------------------
# The gateway's declarative files


def lua_plugin_names(n):
    return ["bench-lua-%d" % (i + 1) for i in range(n)]


def kong_plain(upstream_port, plugins=0):
    """Scenarios 1-3: one service, one route `/`; with `plugins` > 0, that many copies of the
    Kong-style Lua plugin (custom_plugins) on the route."""
    out = ['_format_version: "3.0"']
    names = lua_plugin_names(plugins)
    if names:
        out.append("custom_plugins:")
        for i, name in enumerate(names):
            # distinct priorities, so the order does not depend on how ties are broken
            handler = template("kong-plugin-handler.lua", PRIORITY=1000 - i)
            schema = template("kong-plugin-schema.lua", NAME=name)
            out.append("  - name: %s" % q(name))
            out.append("    handler: |")
            out.append(block(handler, 6))
            out.append("    schema: |")
            out.append(block(schema, 6))
    out.append("services:")
    out.append("  - name: up")
    out.append("    url: %s" % q("http://127.0.0.1:%d" % upstream_port))
    out.append("    routes:")
    out.append("      - name: r")
    out.append('        paths: ["/"]')
    if names:
        out.append("        plugins:")
        for name in names:
            out.append("          - name: %s" % q(name))
    return "\n".join(out) + "\n"


def kong_callout(upstream_port, kind, port):
    """Scenarios 8-9: one route with the callout plugin (kind "redis": one GET per request on
    `port`; "http": one request_uri per request to `port`)."""
    handler = template("kong-callout-handler.lua", KIND=kind, PORT=port)
    schema = template("kong-plugin-schema.lua", NAME="bench-callout")
    out = ['_format_version: "3.0"', "custom_plugins:", '  - name: "bench-callout"',
           "    handler: |", block(handler, 6), "    schema: |", block(schema, 6),
           "services:", "  - name: up", "    url: %s" % q("http://127.0.0.1:%d" % upstream_port),
           "    routes:", "      - name: r", '        paths: ["/"]', "        plugins:",
           '          - name: "bench-callout"']
    return "\n".join(out) + "\n"


def route_and_request(i):
    """Route number i of the many-routes config, and one request (host, path) that it matches.

    The mix, by i % 10: 0-2 exact host + prefix; 3 `*.x` wildcard host + prefix; 4 `x.*`
    wildcard host + prefix; 5-7 prefix only; 8 regex path only; 9 exact host + regex path with a
    named capture. Every seventh route also restricts methods (GET/POST)."""
    k = i % 10
    route = {"name": "r%d" % i}
    if k <= 2:
        route["hosts"] = ["h%d.example.test" % i]
        route["paths"] = ["/h%d" % i]
        req = ("h%d.example.test" % i, "/h%d/item" % i)
    elif k == 3:
        route["hosts"] = ["*.w%d.example.test" % i]
        route["paths"] = ["/w%d" % i]
        req = ("api.w%d.example.test" % i, "/w%d/item" % i)
    elif k == 4:
        route["hosts"] = ["w%d.example.*" % i]
        route["paths"] = ["/w%d" % i]
        req = ("w%d.example.org" % i, "/w%d/item" % i)
    elif k <= 7:
        route["paths"] = ["/p/%d/" % i]
        req = ("prefix.example.test", "/p/%d/item" % i)
    elif k == 8:
        route["paths"] = ["~/r/%d/items/\\d+$" % i]
        req = ("regex.example.test", "/r/%d/items/42" % i)
    else:
        route["hosts"] = ["rx%d.example.test" % i]
        route["paths"] = ["~/items/(?<id>\\d+)/r%d$" % i]
        req = ("rx%d.example.test" % i, "/items/7/r%d" % i)
    if i % 7 == 0:
        route["methods"] = ["GET", "POST"]
    return route, req


def kong_routes(upstream_port, n, variant=0):
    """Scenario 4: `n` routes of route_and_request's mix on one service. `variant` 1 gives route
    r0 an extra path (the reload scenario alternates the two variants, so every POST changes
    the config while every request of the list still matches)."""
    out = ['_format_version: "3.0"', "services:", "  - name: up"]
    out.append("    url: %s" % q("http://127.0.0.1:%d" % upstream_port))
    out.append("    routes:")
    for i in range(n):
        route, _ = route_and_request(i)
        if i == 0 and variant:
            route["paths"] = route["paths"] + ["/h0-variant-%d" % variant]
        out.append("      - name: %s" % route["name"])
        for key in ("hosts", "paths", "methods"):
            if key in route:
                out.append("        %s: [%s]" % (key, ", ".join(q(v) for v in route[key])))
    return "\n".join(out) + "\n"


def request_list(n, seed=6):
    """One request per route of kong_routes(n), shuffled (fixed seed): lines "HOST PATH"."""
    reqs = [route_and_request(i)[1] for i in range(n)]
    random.Random(seed).shuffle(reqs)
    return "".join("%s %s\n" % r for r in reqs)


def kong_auth(upstream_port, n=100, plugins=(), rl_policy="policy: local"):
    """Scenario 6 (Kong's published one): `n` routes and `n` consumers with key-auth keys on one
    service, and the global `plugins` among key-auth and rate-limiting (a limit the load never
    reaches, counted per consumer; `rl_policy`: local, or redis with its fields)."""
    out = ['_format_version: "3.0"', "services:", "  - name: up"]
    out.append("    url: %s" % q("http://127.0.0.1:%d" % upstream_port))
    out.append("    routes:")
    for i in range(n):
        out.append("      - name: a%d" % i)
        out.append("        paths: [%s]" % q("/a%d" % i))
    out.append("consumers:")
    for i in range(n):
        out.append("  - username: c%d" % i)
        out.append("    keyauth_credentials:")
        out.append("      - key: %s" % q("key-%d" % i))
    if plugins:
        out.append("plugins:")
    for name in plugins:
        out.append("  - name: %s" % name)
        if name == "rate-limiting":
            out.append("    config: {minute: 1000000000, limit_by: consumer, %s}" % rl_policy)
    return "\n".join(out) + "\n"


def auth_request_list(n=100, seed=7):
    """Requests spread over kong_auth's routes and consumers (key in the query): "HOST PATH"."""
    rng = random.Random(seed)
    reqs = ["auth.example.test /a%d/item?apikey=key-%d\n" % (i % n, rng.randrange(n))
            for i in range(n * 10)]
    rng.shuffle(reqs)
    return "".join(reqs)


# ---------------------------------------------------------------------------------------------
# nginx


def nginx_user():
    # nginx run as root drops its workers to `nobody` unless told otherwise; the gateway runs as
    # the same user as nginx's master, so keep them equal.
    return "user root;" if os.geteuid() == 0 else ""


def nginx_upstream(tmp, port):
    return template("nginx-upstream.conf", USER=nginx_user(), DIR=tmp, PORT=port)


def bench_cert(tmp):
    """The HTTPS scenario's certificate and key (RSA 2048, self-signed), made in tmp once and
    served by both the gateway and nginx: (cert path, key path)."""
    crt, key = os.path.join(tmp, "bench.crt"), os.path.join(tmp, "bench.key")
    if not os.path.exists(crt):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                        "/CN=bench.test", "-days", "2", "-keyout", key, "-out", crt],
                       check=True, capture_output=True)
    return crt, key


def nginx_peer(tmp, name, port, upstream_port, plugins=0, tls=None, callout=None):
    """The nginx (plugins = 0) or nginx+Lua (plugins > 0) peer; with tls = (cert, key) paths,
    it terminates TLS (HTTP/1.1, the same certificate the gateway serves); with callout =
    (kind, port), its one plugin is nginx_callout.lua's."""
    listen_opts = ssl = ""
    if tls:
        listen_opts = " ssl"
        ssl = ("        ssl_certificate %s;\n        ssl_certificate_key %s;\n"
               "        ssl_session_cache shared:SSL:10m;" % tls)
    load_modules = lua_http = lua_location = ""
    if plugins:
        load_modules = "\n".join("load_module %s;" % m for m in NGINX_LUA_MODULES)
        lua_http = (
            '    lua_package_path "%s/?.lua;;";\n'
            '    init_by_lua_block { require("nginx_plugins").init(%d) }\n' % (tmp, plugins)
        )
        lua_location = (
            '            access_by_lua_block { require("nginx_plugins").access() }\n'
            '            header_filter_by_lua_block { require("nginx_plugins").header_filter() }'
        )
    if callout:
        lua_http = (
            '    lua_package_path "%s/?.lua;;";\n'
            '    init_by_lua_block { require("nginx_callout").init("%s", %d) }\n'
            % (tmp, callout[0], callout[1])
        )
        lua_location = lua_location.replace("nginx_plugins", "nginx_callout")
    return template(
        "nginx-peer.conf",
        USER=nginx_user(),
        LOAD_MODULES=load_modules,
        DIR=tmp,
        NAME=name,
        PORT=port,
        UPSTREAM_PORT=upstream_port,
        LUA_HTTP=lua_http,
        LUA_LOCATION=lua_location,
        LISTEN_OPTS=listen_opts,
        SSL=ssl,
    )


def nginx_plugins_lua():
    with open(os.path.join(TEMPLATES, "nginx_plugins.lua")) as f:
        return f.read()


def nginx_callout_lua():
    with open(os.path.join(TEMPLATES, "nginx_callout.lua")) as f:
        return f.read()


def nginx_resty_http_lua():
    """resty/http.lua for the nginx+Lua peer: the gateway's own module, which takes `ngx`."""
    src = os.path.join(os.path.dirname(TEMPLATES), "..", "src", "plugins", "lua", "io", "http.lua")
    return 'return assert(loadfile(%s))(ngx)["resty.http"]\n' % q(os.path.abspath(src))


def render_all(out_dir, upstream_port=9001, routes=10000):
    """Writes every config with placeholder ports to out_dir (for reading, not running)."""
    os.makedirs(out_dir, exist_ok=True)
    files = {
        "kong-plain.yaml": kong_plain(upstream_port),
        "kong-lua1.yaml": kong_plain(upstream_port, 1),
        "kong-lua10.yaml": kong_plain(upstream_port, 10),
        "kong-routes-%d.yaml" % routes: kong_routes(upstream_port, routes),
        "requests-%d.txt" % routes: request_list(routes),
        "kong-auth.yaml": kong_auth(upstream_port, 100, ("key-auth", "rate-limiting")),
        "requests-auth.txt": auth_request_list(),
        "nginx-upstream.conf": nginx_upstream(out_dir, upstream_port),
        "nginx-plain.conf": nginx_peer(out_dir, "nginx-plain", 9002, upstream_port),
        "nginx-lua1.conf": nginx_peer(out_dir, "nginx-lua1", 9003, upstream_port, 1),
        "nginx-lua10.conf": nginx_peer(out_dir, "nginx-lua10", 9004, upstream_port, 10),
        "nginx_plugins.lua": nginx_plugins_lua(),
        "kong-callout-redis.yaml": kong_callout(upstream_port, "redis", 6379),
        "kong-callout-http.yaml": kong_callout(upstream_port, "http", upstream_port),
        "nginx-callout-redis.conf": nginx_peer(out_dir, "nginx-callout-redis", 9005,
                                               upstream_port, 1, callout=("redis", 6379)),
        "nginx_callout.lua": nginx_callout_lua(),
    }
    for name, text in files.items():
        with open(os.path.join(out_dir, name), "w") as f:
            f.write(text)
    return sorted(files)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: configs.py OUT_DIR")
    for name in render_all(sys.argv[1]):
        print(os.path.join(sys.argv[1], name))
