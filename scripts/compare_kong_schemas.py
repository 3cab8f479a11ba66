#!/usr/bin/env python3
"""Compares GET /schemas/plugins/{name} for the bundled plugins with Kong's own schemas.

Kong's `kong/plugins/<name>/schema.lua` of each bundled plugin is loaded into the gateway as a
custom plugin `kong-<name>` (read from a Kong checkout at run time; nothing of Kong's is kept),
and both schemas are fetched from the admin API and compared field by field under `config`:
type, default and `required`. Schemas that need Kong internals the plugin sandbox does not
offer (`pl.template`, `socket.url`, `kong.db.schema`, ...) are reported as not comparable.

    scripts/compare_kong_schemas.py --kong /path/to/kong [--proxy target/release/proxy]

`--kong` is a Kong checkout or a bare git directory (its HEAD is read).
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BUNDLED = ["acl", "basic-auth", "correlation-id", "cors", "file-log", "http-log",
           "ip-restriction", "key-auth", "post-function", "pre-function", "prometheus",
           "rate-limiting", "redirect", "request-size-limiting", "request-termination",
           "request-transformer", "response-ratelimiting", "response-transformer"]


def kong_schema(kong, name):
    path = f"kong/plugins/{name}/schema.lua"
    if os.path.isdir(os.path.join(kong, "kong")):
        with open(os.path.join(kong, path)) as f:
            return f.read()
    return subprocess.run(["git", "--git-dir", kong, "show", f"HEAD:{path}"],
                          capture_output=True, text=True, check=True).stdout


def custom_entry(name, src):
    new = "kong-" + name
    src = re.sub(r"""name\s*=\s*["']%s["']""" % re.escape(name), f'name = "{new}"', src)
    handler = json.dumps('return { PRIORITY = 1, VERSION = "1.0.0" }')
    return f"- name: {new}\n  handler: {handler}\n  schema: {json.dumps(src)}\n"


def check(proxy, text):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    out = subprocess.run([proxy, "check", f.name], capture_output=True, text=True)
    return out.returncode == 0, out.stderr


def flat(fields, prefix=""):
    out = {}
    for f in fields:
        (k, v), = f.items()
        out[prefix + k] = (v.get("type"), json.dumps(v.get("default"), sort_keys=True),
                           bool(v.get("required", False)))
        if v.get("type") == "record" and "fields" in v:
            out.update(flat(v["fields"], prefix + k + "."))
    return out


def config_fields(schema):
    return next(f["config"] for f in schema["fields"] if "config" in f)["fields"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kong", required=True)
    ap.add_argument("--proxy", default="target/release/proxy")
    args = ap.parse_args()
    head = '_format_version: "3.0"\ncustom_plugins:\n'
    loadable, skipped = [], []
    for name in BUNDLED:
        entry = custom_entry(name, kong_schema(args.kong, name))
        ok, err = check(args.proxy, head + entry)
        if ok:
            loadable.append((name, entry))
        else:
            skipped.append((name, err.strip().splitlines()[0].split(": schema: ")[-1][:90]))
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    admin = s.getsockname()[1]
    s.close()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(head + "".join(e for _, e in loadable))
    p = subprocess.Popen([args.proxy, "--config", f.name, "--listen", "127.0.0.1:0",
                          "--listen-tls", "off", "--admin-listen", f"127.0.0.1:{admin}",
                          "--no-watch"], stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{admin}/status")
                break
            except OSError:
                time.sleep(0.1)
        get = lambda n: json.load(urllib.request.urlopen(f"http://127.0.0.1:{admin}/schemas/plugins/{n}"))
        total = same = 0
        for name, _ in loadable:
            ours, kong = get(name), get("kong-" + name)
            o, k = flat(config_fields(ours)), flat(config_fields(kong))
            keys = sorted(set(o) | set(k))
            diffs = [(x, o.get(x), k.get(x)) for x in keys if o.get(x) != k.get(x)]
            tops = [list(x)[0] for x in ours["fields"]] == [list(x)[0] for x in kong["fields"]]
            total += len(keys)
            same += len(keys) - len(diffs)
            print(f"{name:24} config fields {len(keys):3}  differing {len(diffs):2}  top-level fields equal: {tops}")
            for d in diffs:
                print(f"    {d[0]}: ours {d[1]}, Kong's {d[2]}")
        for name, why in skipped:
            print(f"{name:24} not comparable: {why}")
        print(f"{len(loadable)} of {len(BUNDLED)} compared: {same} of {total} config fields equal")
    finally:
        p.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
