"""Starting Spark on this machine: a standalone cluster (master + workers on 127.0.0.1) from pyspark's own
launcher, and a driver whose JVM output goes to a log file instead of the terminal."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from recengine.errors import RecengineError

_MASTER = "org.apache.spark.deploy.master.Master"
_WORKER = "org.apache.spark.deploy.worker.Worker"


class StandaloneCluster:
    """A Spark standalone master and `workers` workers on 127.0.0.1, each worker offering `cores` cores and
    `memory` to executors. Started by `start()` (or `with`), stopped by `stop()`: every process it started is
    ended, by its process group, and waited for.
    """

    def __init__(self, workers: int = 2, cores: int = 1, memory: str = "1g", log_dir: str | Path | None = None,
                 timeout: float = 120.0):
        self.workers = workers
        self.cores = cores
        self.memory = memory
        self.log_dir = log_dir
        self.timeout = timeout

    def start(self) -> Self:
        from pyspark.find_spark_home import _find_spark_home

        self._processes: list[subprocess.Popen] = []
        self._logs = Path(self.log_dir or tempfile.mkdtemp(prefix="recengine-spark-cluster-"))
        self._logs.mkdir(parents=True, exist_ok=True)
        self._spark_class = str(Path(_find_spark_home()) / "bin" / "spark-class")
        port, ui = _free_port(), _free_port()
        self.master_url = f"spark://127.0.0.1:{port}"
        self.ui_url = f"http://127.0.0.1:{ui}"
        try:
            self._launch("master", _MASTER, "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui))
            for n in range(self.workers):
                self._launch(f"worker-{n}", _WORKER, self.master_url, "--host", "127.0.0.1", "--cores",
                             str(self.cores), "--memory", self.memory, "--webui-port", str(_free_port()),
                             "--work-dir", str(self._logs / f"work-{n}"))
            self._wait_for_workers()
        except BaseException:
            self.stop()
            raise
        return self

    def alive_workers(self) -> int:
        """Workers the master reports ALIVE (0 while its web UI is not up yet)."""
        try:
            with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=2) as response:
                state = json.load(response)
        except OSError:
            return 0
        return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in getattr(self, "_processes", [])]

    def stop(self) -> None:
        for process in reversed(getattr(self, "_processes", [])):
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
        for process in getattr(self, "_processes", []):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
            # A worker's executor JVMs share its group and can outlive it by a moment: wait for the whole group.
            if not _group_gone(process.pid, timeout=30):
                _signal_group(process.pid, signal.SIGKILL)
                _group_gone(process.pid, timeout=30)
        self._processes = []

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _launch(self, name: str, main_class: str, *args: str) -> None:
        log = open(self._logs / f"{name}.log", "ab")  # noqa: SIM115 - the child holds it for its life
        # Executors run Python from this environment; each process leads its own group, so stop() ends all.
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
        self._processes.append(subprocess.Popen([self._spark_class, main_class, *args], stdout=log,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                                start_new_session=True))
        log.close()

    def _wait_for_workers(self) -> None:
        deadline = time.monotonic() + self.timeout
        while self.alive_workers() < self.workers:
            dead = [p.args[1] for p in self._processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"{dead[0]} exited" if dead else f"{self.workers} workers not registered in {self.timeout:.0f}s"
                raise RecengineError(f"the standalone Spark cluster did not start ({why}); logs in {self._logs}")
            time.sleep(0.5)


def _signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False when no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _signal_group(pgid, 0):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def jvm_output_to(log_file: str | Path) -> Iterator[None]:
    """Point this process's stdout and stderr at `log_file` while a Spark driver starts inside the block.

    The driver JVM (and the Python workers it forks) inherits the file descriptors at launch, so Spark's own
    messages, including those printed before any log level applies, go to the file; Python's are restored after.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    target = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)


def quiet_session(master: str | None, log_file: str | None = None):
    """(SparkSession, where its logs go) for a command line: the JVM's output goes to `log_file` (default
    recengine-spark.log in the temp directory), or to the terminal with verbose logging when it is "-"."""
    import warnings

    from recengine.engines.spark.session import spark_session

    # pyspark 4 warns on every conversion under pandas 3; recengine's conversions are plain numeric columns.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    warnings.filterwarnings("ignore", message="The copy keyword is deprecated")
    if log_file == "-":
        return spark_session(master, verbose=True), "the terminal"
    log_file = log_file or str(Path(tempfile.gettempdir()) / "recengine-spark.log")
    with jvm_output_to(log_file):
        session = spark_session(master)
    return session, log_file
