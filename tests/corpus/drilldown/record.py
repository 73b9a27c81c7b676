#!/usr/bin/env python3
"""Records a reference Loki's answers to requests.json over dataset.json into loki.json.

Usage: record.py http://127.0.0.1:3100   (a fresh Loki with auth off)

Timestamps in the dataset are seconds after a base time: a whole minute 15 minutes ago, so
metric buckets fall alike on every run. Answers are stored with times relative to it.
"""
import datetime, json, sys, time, urllib.error, urllib.parse, urllib.request
from pathlib import Path

here = Path(__file__).parent
base_url = sys.argv[1].rstrip("/")
base = (int(time.time()) - 900) // 60 * 60
push = json.loads((here / "dataset.json").read_text())["push"]
for s in push["streams"]:
    for v in s["values"]:
        v[0] = str((base + int(v[0])) * 1_000_000_000)
req = urllib.request.Request(base_url + "/loki/api/v1/push", json.dumps(push).encode(),
                             {"Content-Type": "application/json"})
urllib.request.urlopen(req).read()
time.sleep(2)
iso = lambda s: datetime.datetime.fromtimestamp(s, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
subst = {"{start_iso}": iso(base), "{end_iso}": iso(base + 300),
         "{start_ns}": str(base * 10**9), "{end_ns}": str((base + 300) * 10**9)}
out = {"base": base}
for r in json.loads((here / "requests.json").read_text()):
    params = {k: subst.get(v, v) for k, v in r["params"].items()}
    url = base_url + r["path"] + "?" + urllib.parse.urlencode(params)
    q = urllib.request.Request(url, headers=r.get("headers", {}))
    try:
        with urllib.request.urlopen(q) as resp:
            status, body = resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read().decode()
    try:
        body = json.loads(body)
        if isinstance(body, dict) and isinstance(body.get("data"), dict):
            body["data"].pop("stats", None)
    except ValueError:
        pass
    out[r["name"]] = {"status": status, "body": body}
(here / "loki.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
