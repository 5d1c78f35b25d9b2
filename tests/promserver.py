"""A real Prometheus on a loopback port, scraping the given targets, for tests.

    proc, url = start_prometheus(tmp_path, ["127.0.0.1:9321"], interval="1s")
    ...  # wait on url + "/-/ready"
    proc.terminate(); proc.wait(10)

Its data and log go under ``tmp``; the dashboards' alert and recording rules are loaded unless
``rules=False``.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import yaml
from _require import require_binary

DASH = Path(__file__).resolve().parents[1] / "dashboards"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_prometheus(tmp: Path, targets: list[str], *, interval: str = "1s", rules: bool = True
                     ) -> tuple[subprocess.Popen, str]:
    binary = require_binary("prometheus")
    cfg = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": [str(DASH / "rules" / "alerts.yml"), str(DASH / "rules" / "recording.yml")] if rules else [],
        "scrape_configs": [{"job_name": "signalpath", "static_configs": [{"targets": targets}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    port = free_port()
    with open(tmp / "prometheus.log", "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([binary, f"--config.file={tmp / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"
