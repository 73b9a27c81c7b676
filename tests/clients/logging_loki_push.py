"""Pushes log lines through python-logging-loki (JSON), as a Python app would.

Usage: python logging_loki_push.py <base-url> <run-id> <count>
"""
import logging
import sys

import logging_loki

base, run_id, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
failures = []


class StrictHandler(logging_loki.LokiHandler):
    def handleError(self, record):  # noqa: N802 - logging's API
        failures.append(sys.exc_info()[1])


handler = StrictHandler(
    url=f"{base}/loki/api/v1/push",
    tags={"app": "python-e2e", "run": run_id},
    version="1",
)
logger = logging.getLogger("e2e")
logger.setLevel(logging.DEBUG)
logger.addHandler(handler)
for i in range(count):
    logger.warning("python line %d run=%s", i, run_id, extra={"tags": {"component": "worker"}})
if failures:
    print("push failed:", failures[0], file=sys.stderr)
    sys.exit(1)
