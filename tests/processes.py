"""Process trees for tests that kill a process: what it started, and whether that is gone."""

import time

import psutil


def running(process: psutil.Process) -> bool:
    """Whether the process still runs; a zombie has exited and only waits for its reaper."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def survivors(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Poll until every process has exited; those still running at the deadline."""
    deadline = time.monotonic() + timeout
    while (alive := [process for process in processes if running(process)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def is_forkserver(process: psutil.Process) -> bool:
    """Whether the process is a multiprocessing forkserver."""
    return any("multiprocessing.forkserver" in argument for argument in process.cmdline())


def is_delivery_worker(process: psutil.Process) -> bool:
    """Whether the process is a delivery worker (``python -m fastapi1.worker``)."""
    try:
        return "fastapi1.worker" in process.cmdline()
    except psutil.NoSuchProcess:
        return False


def pool_processes(owner: psutil.Process, workers: int, timeout: float = 60) -> list[psutil.Process]:
    """Everything ``owner`` started for its process pool, once all ``workers`` have started.

    That is the forkserver, its children (the pool workers) and the resource tracker.
    """
    deadline = time.monotonic() + timeout
    while True:
        forkservers = [child for child in owner.children() if is_forkserver(child)]
        if len(forkservers) == 1 and len(forkservers[0].children()) == workers:
            return owner.children(recursive=True)
        assert time.monotonic() < deadline, owner.children(recursive=True)
        time.sleep(0.05)


def kill_all(processes: list[psutil.Process]) -> None:
    """SIGKILL whatever still runs, so a failed test leaves no orphans behind."""
    for process in processes:
        if running(process):
            process.kill()
