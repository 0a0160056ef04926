"""Stream processes of a multi-process ``run``: how many, their reports, the restart budget,
and the metrics of several processes merged into one exposition."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from tests.fixtures.served import metric_total
from worker.settings import load_settings
from worker.stream.health import StreamStatus
from worker.stream.member_status import STALE_AFTER_S, read_report, write_report
from worker.stream.metrics import SupervisorMetrics
from worker.stream.processes import available_cores, process_count
from worker.stream.supervisor import MAX_RESTARTS, RestartBudget, StreamProcess, Supervisor, sweep_stale_run_dirs

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("environ", "gpu", "expected"), [
    ({"NER_PROCESSES": "3"}, False, 3),
    ({}, False, 1),  # transformers on a CPU: the engine uses every core itself
    ({"NER_DEVICE": "cpu"}, True, 1),
    ({}, True, 4),  # transformers, device auto, a GPU visible
    ({"NER_DEVICE": "cuda"}, False, 4),
    ({"NER_ENGINE": "vllm"}, False, 4),
    ({"NER_ENGINE": "remote", "NER_REMOTE_URL": "http://engine:8000"}, False, 8),
])
def test_process_count_follows_the_setting_or_the_engine_and_cores(environ: dict[str, str], gpu: bool,
                                                                   expected: int) -> None:
    assert process_count(load_settings(environ), cores=16, gpu=gpu) == expected


def test_process_count_is_at_least_one_on_a_small_host_and_at_most_eight_on_a_large_one() -> None:
    assert process_count(load_settings({"NER_ENGINE": "vllm"}), cores=2, gpu=True) == 1
    assert process_count(load_settings({"NER_ENGINE": "vllm"}), cores=128, gpu=True) == 8
    assert process_count(load_settings({"NER_PROCESSES": "12"}), cores=2) == 12  # a chosen count stands
    assert process_count(load_settings({"NER_ENGINE": "remote", "NER_REMOTE_URL": "http://e"}), cores=1) == 1


def test_available_cores_honours_a_container_cpu_limit(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("50000 100000\n")  # half a core
    assert available_cores(cpu_max) == 1
    cpu_max.write_text("max 100000\n")
    assert available_cores(cpu_max) == affinity
    cpu_max.write_text(f"{(affinity + 4) * 100000} 100000\n")  # a limit above the affinity
    assert available_cores(cpu_max) == affinity
    assert available_cores(tmp_path / "absent") == affinity


def test_restart_budget_allows_a_few_restarts_per_window() -> None:
    budget = RestartBudget(limit=3, window_s=60)
    assert [budget.take(now) for now in (0, 1, 2, 3)] == [True, True, True, False]
    assert budget.take(59.9) is False
    assert budget.take(60.0) is True  # the first restart has left the window
    assert budget.take(60.5) is False


def test_a_report_says_the_checks_and_goes_stale(tmp_path: Path) -> None:
    path = tmp_path / "1.json"
    assert read_report(path) is None  # not written yet
    status = StreamStatus(broker_reachable=True)
    write_report(path, status)
    report = read_report(path)
    assert report is not None and report.fresh
    assert report.readiness == {"engine_loaded": False, "group_joined": False, "broker_reachable": True}
    assert report.health == {"event_loop": True, "main_loop": True, "publisher": True}
    old = time.time() - STALE_AFTER_S - 1
    os.utime(path, (old, old))
    stale = read_report(path)
    assert stale is not None and not stale.fresh
    path.write_bytes(b"{half a")
    assert read_report(path) is None
    assert list(tmp_path.iterdir()) == [path]  # no partial file left behind


_STREAM_PROCESS = """
import sys
from worker.stream.metrics import WorkerMetrics
m = WorkerMetrics()
received, inflight, lag, forget = (int(a) for a in sys.argv[1:5])
m.records_received.inc(received)
m.inflight_records.set(inflight)
m.consumer_lag.labels("in", "0").set(lag)
if forget:
    m.forget_lag("in", 0)
m.records_dead_lettered.labels("bad_json").inc()
"""


def _stream_process(metrics_dir: Path, *values: int) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-W", "error", "-c", _STREAM_PROCESS, *map(str, values)], env=env, check=True)


def test_supervisor_metrics_merge_every_stream_process(tmp_path: Path) -> None:
    # Each "process" is a real interpreter in prometheus_client's multiprocess mode, as a stream
    # process is; -W error: a label removal (unsupported there) would fail it.
    _stream_process(tmp_path, 70, 5, 900, 1)  # owned partition 0, then lost it
    _stream_process(tmp_path, 30, 2, 40, 0)  # owns it now (wrote later)
    metrics = SupervisorMetrics(tmp_path, lambda: {"supervisor": os.getpid()})
    metrics.info.info({"version": "x"})
    text = generate_latest(metrics.registry).decode()
    assert metric_total(text, "ner_records_received_total") == 100
    assert metric_total(text, "ner_records_dead_lettered_total", {"reason": "bad_json"}) == 2
    assert metric_total(text, "ner_inflight_records") == 7
    assert metric_total(text, "ner_consumer_lag_records", {"partition": "0"}) == 40  # the owner's, not the sum
    assert 'ner_worker_info{version="x"} 1.0' in text
    assert metric_total(text, "process_cpu_seconds_total", {"process": "supervisor"}) > 0
    assert "pid=" not in text  # every gauge merges over processes


_HOLDS_64_MIB = ("import sys; block = bytearray(64 << 20); sys.stdout.write('ready\\n'); sys.stdout.flush(); "
                 "sys.stdin.read()")


def _proc_figures(pid: int) -> tuple[float, float]:
    """CPU seconds and resident bytes of ``pid``, read from /proc here (not by the code under test)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[21]) * os.sysconf("SC_PAGESIZE")


def test_process_metrics_of_several_processes_are_labelled_by_process(tmp_path: Path) -> None:
    # A real child holding 64 MiB: its series must be its own, not the scraping process's.
    child = subprocess.Popen([sys.executable, "-c", _HOLDS_64_MIB], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        ended = subprocess.Popen([sys.executable, "-c", "pass"])
        ended.wait()  # a pid that no longer runs contributes nothing (and fails nothing)
        pids = {"supervisor": os.getpid(), "stream-1": child.pid, "stream-2": ended.pid}
        text = generate_latest(SupervisorMetrics(tmp_path, lambda: pids).registry).decode()
        cpu, resident = _proc_figures(child.pid)
    finally:
        child.kill()
        child.wait()
    assert text.count("# TYPE process_resident_memory_bytes gauge") == 1  # one family, labelled samples
    assert metric_total(text, "process_resident_memory_bytes", {"process": "stream-1"}) == pytest.approx(
        resident, rel=0.05)
    assert resident > 64 << 20
    assert metric_total(text, "process_cpu_seconds_total", {"process": "stream-1"}) == pytest.approx(cpu, abs=0.05)
    own = metric_total(text, "process_resident_memory_bytes", {"process": "supervisor"})
    assert own > 0 and own != metric_total(text, "process_resident_memory_bytes", {"process": "stream-1"})
    for family in ("process_open_fds", "process_max_fds", "process_start_time_seconds",
                   "process_virtual_memory_bytes"):
        assert metric_total(text, family, {"process": "stream-1"}) > 0, family
    assert 'process="stream-2"' not in text
    assert "\nprocess_cpu_seconds_total " not in text  # no unlabelled sample beside the labelled ones


def _supervise(monkeypatch: pytest.MonkeyPatch, program: str, tmp_path: Path) -> int:
    """Run the supervisor (remote engine: no engine host) over stream processes that run
    ``program`` instead of the stream, with the restart budget's window long enough to count."""
    def command(process: StreamProcess) -> list[str]:
        return [sys.executable, "-c", program, str(process.index), str(tmp_path)]

    monkeypatch.setattr(StreamProcess, "command", command)
    settings = load_settings({"NER_ENGINE": "remote", "NER_REMOTE_URL": "http://engine", "NER_HTTP_PORT": "0"})
    return asyncio.run(asyncio.wait_for(Supervisor(settings, 2).run(), 60))


_DIES_AT_ONCE = "import sys; sys.exit(1)"


def test_stream_processes_that_keep_dying_are_restarted_until_the_budget_is_spent(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert _supervise(monkeypatch, _DIES_AT_ONCE, tmp_path) == 1
    restarts = [r for r in caplog.records if r.getMessage().endswith("restarting it")]
    assert len(restarts) == MAX_RESTARTS
    assert "the restart budget (3 within 60s) is spent" in caplog.text


_REFUSED = """
import sys, time
if sys.argv[1] == "1":
    sys.exit(4)
time.sleep(60)
"""


def test_a_stream_process_stopped_by_a_refusal_stops_the_worker_without_a_restart(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Exit 4: the broker refused for good (a permission denied, say); a restart would meet the same.
    started = time.monotonic()
    assert _supervise(monkeypatch, _REFUSED, tmp_path) == 1  # the worker's status for such a stop
    assert not [r for r in caplog.records if r.getMessage().endswith("restarting it")]
    assert "a restart would meet the same refusal" in caplog.text
    assert time.monotonic() - started < 30


_CANNOT_START = """
import sys, time
if sys.argv[1] == "1":
    sys.exit(3)
time.sleep(60)
"""


def test_a_stream_process_that_cannot_start_stops_the_worker_with_its_status(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    started = time.monotonic()
    assert _supervise(monkeypatch, _CANNOT_START, tmp_path) == 3  # no restart: it would fail again
    assert time.monotonic() - started < 30  # the other process was stopped (SIGTERM), not waited for


def test_run_folders_of_supervisors_killed_outright_are_swept(tmp_path: Path) -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    stale, live, unknown = (tmp_path / f"ner-worker-{name}" for name in ("stale", "live", "unknown"))
    for folder, pid in ((stale, ended.pid), (live, os.getpid())):
        (folder / "metrics").mkdir(parents=True)
        (folder / "supervisor.pid").write_text(str(pid))
    unknown.mkdir()  # no pid file: not judged
    sweep_stale_run_dirs(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ner-worker-live", "ner-worker-unknown"]
