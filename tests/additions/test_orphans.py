"""A process pool ends with the process that owns it, however that process dies."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil

from tests.conftest import PROJECT_ROOT
from tests.processes import is_forkserver, kill_all, pool_processes, survivors

# Owns a two-worker pool and keeps one worker busy with a task held at the test's gate.
OWNER = """
import asyncio
import sys

from fastapi1.additions.pool import ComputePool
from tests.additions.slow import gated_add_pairs


async def main() -> None:
    pool = ComputePool(2)
    await pool.warm_up()
    gate = (sys.argv[1], int(sys.argv[2]))
    await asyncio.get_running_loop().run_in_executor(pool.executor, gated_add_pairs, gate, [1], [2])


asyncio.run(main())
"""


class TestOwnerDeath:
    def test_a_sigkilled_owner_takes_its_forkserver_and_busy_and_idle_workers_along(self, tmp_path: Path) -> None:
        with socket.create_server(("127.0.0.1", 0)) as gate, (tmp_path / "owner.log").open("wb") as log:
            gate.settimeout(60)
            host, port = gate.getsockname()[:2]
            command = [sys.executable, "-c", OWNER, host, str(port)]
            owner = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
            pool: list[psutil.Process] = []
            try:
                connection, _ = gate.accept()
                with connection:
                    busy = int(connection.makefile().readline())
                    pool = pool_processes(psutil.Process(owner.pid), workers=2)
                    assert busy in {process.pid for process in pool}
                    assert any(is_forkserver(process) for process in pool)

                    os.kill(owner.pid, signal.SIGKILL)
                    owner.wait(timeout=10)
                    # The busy worker is still held at the gate: only its owner's death can end it.
                    assert survivors(pool, timeout=10) == [], (tmp_path / "owner.log").read_text()
            finally:
                owner.kill()
                owner.wait(timeout=10)
                kill_all(pool)
