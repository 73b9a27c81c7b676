#!/usr/bin/env python3
"""Measures a Lambda function binary's cold start locally, the way Lambda counts "Init
Duration": from process start until the runtime's first poll of the Runtime API
(`GET /2018-06-01/runtime/invocation/next`). It serves that API itself on 127.0.0.1, hands the
function one recorded event, times the invocation, then stops the process.

    python3 functions/push/tests/coldstart.py BOOTSTRAP EVENT.json [RUNS] [EXTRA_ENV=VALUE ...]

Prints the median and worst init time and first-invocation time over RUNS (default 10) fresh
processes. Storage is a temporary directory (file://), so nothing leaves the machine.
"""
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time


class State:
    def __init__(self, event):
        self.event = event
        self.ready = threading.Event()
        self.done = threading.Event()
        self.t_ready = None
        self.t_done = None
        self.served = False
        self.response = None


def make_handler(state):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            if not self.path.endswith("/runtime/invocation/next"):
                self.send_error(404)
                return
            if state.served:
                # Second poll: the process is done with our one event; park it.
                state.done.wait(30)
                time.sleep(30)
                return
            state.t_ready = time.perf_counter()
            state.ready.set()
            state.served = True
            body = state.event
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Lambda-Runtime-Aws-Request-Id", "8476a536-e9f4-11e8-9739-2dfe598c3fcd")
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                             "arn:aws:lambda:us-east-1:123456789012:function:parquetry")
            self.send_header("Lambda-Runtime-Trace-Id", "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0") or 0)
            data = self.rfile.read(length) if length else b""
            if "/response" in self.path or "/error" in self.path:
                state.t_done = time.perf_counter()
                state.response = (self.path, data)
                state.done.set()
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def run_once(binary, event, extra_env):
    state = State(event)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    # The parked second poll is cut off when the process is stopped; that is expected.
    server.handle_error = lambda *args: None
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as data:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
            "AWS_LAMBDA_FUNCTION_NAME": "parquetry",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_STREAM_NAME": "local",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/parquetry",
            "PARQUETRY__STORAGE__URL": f"file://{data}",
            "PARQUETRY__LIMITS_CONFIG__REJECT_OLD_SAMPLES": "false",
            "PARQUETRY__SERVER__LOG_LEVEL": "warn",
        }
        env.update(extra_env)
        t0 = time.perf_counter()
        proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL)
        try:
            if not state.ready.wait(30):
                raise SystemExit("the function never polled the Runtime API")
            if not state.done.wait(30):
                raise SystemExit("the function never answered the event")
        finally:
            proc.kill()
            proc.wait()
            server.shutdown()
    path, data = state.response
    if "/error" in path:
        raise SystemExit(f"invocation error: {data[:500]!r}")
    status = json.loads(data).get("statusCode")
    return (state.t_ready - t0) * 1000, (state.t_done - state.t_ready) * 1000, status


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    binary, event_path = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    extra = dict(a.split("=", 1) for a in sys.argv[4:])
    with open(event_path, "rb") as f:
        event = f.read()
    inits, invokes = [], []
    for _ in range(runs):
        init, invoke, status = run_once(binary, event, extra)
        inits.append(init)
        invokes.append(invoke)
    print(f"{os.path.basename(os.path.dirname(binary)) or binary}: status {status}, "
          f"init median {statistics.median(inits):.1f} ms (max {max(inits):.1f}), "
          f"first invocation median {statistics.median(invokes):.1f} ms "
          f"(max {max(invokes):.1f}) over {runs} runs")


if __name__ == "__main__":
    main()
