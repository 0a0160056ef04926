"""A real Prometheus (Debian's package, unpacked by tools/install_deploy_tools.sh) for the tests."""

from __future__ import annotations

import json
import math
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.toolbox import tool
from tests.fixtures.ports import free_port
from tests.fixtures.served import wait_until_answering


class PrometheusServer:
    """Prometheus scraping `targets` (and the targets of `more_jobs`) every second, with `rule_files`
    evaluated every second."""

    def __init__(self, workdir: Path, job: str, targets: list[str], rule_files: list[Path],
                 more_jobs: Mapping[str, list[str]] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        jobs = {job: targets, **(more_jobs or {})}
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": name, "static_configs": [{"targets": tt}]} for name, tt in jobs.items()],
        }
        self.config_file = workdir / "prometheus.yml"
        self.config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log_path = workdir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> PrometheusServer:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(tool("prometheus")),
                    f"--config.file={self.config_file}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=log,
            )
        wait_until_answering(self.process, f"http://127.0.0.1:{self.port}/-/ready", what="prometheus", log=self.log,
                             timeout_s=timeout)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns `data`, fails with Prometheus' own error message."""
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.load(error)
        assert body["status"] == "success", f"{path} {params}: {body.get('errorType')}: {body.get('error')}"
        return body["data"]

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def scalar(self, promql: str) -> float | None:
        """The one value of an instant vector, or None when the vector is empty."""
        result = self.query(promql)
        assert len(result) <= 1, f"{promql} has {len(result)} series"
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, promql: str, wanted: float, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.scalar(promql)
            if last is not None and math.isclose(last, wanted):
                return
            time.sleep(0.5)
        raise AssertionError(f"{promql} = {last}, wanted {wanted} (after {timeout}s)")
