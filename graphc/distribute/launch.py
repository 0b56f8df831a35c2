"""Start an MPI job of this Python from Python (used by ``graphc bench --suite W14`` and
the tests): ``mpiexec -n N <this python> -m mpi4py SCRIPT ARGS...``.

``-m mpi4py`` makes an uncaught exception on any rank abort the whole job; the subprocess
timeout kills the job's process group if it still runs after ``timeout`` seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnavailableError
from .comm import INSTALL_HINT


def mpiexec_path() -> str:
    """``mpiexec`` beside this Python (the mpich wheel installs it there), else on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    if here.exists():
        return str(here)
    found = shutil.which("mpiexec")
    if found is None:
        raise UnavailableError(f"no mpiexec found: {INSTALL_HINT}")
    return found


@dataclass
class JobResult:
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool


def run_job(n: int, script, args=(), timeout: float = 120.0, env=None, cwd=None,
            mpi4py_main: bool = True) -> JobResult:  # fmt: skip
    """Run ``script`` on ``n`` processes of this machine; the job's exit status and output.
    A job still running after ``timeout`` seconds is killed (``timed_out``).
    ``mpi4py_main=False`` starts ``python SCRIPT`` instead of ``python -m mpi4py SCRIPT``."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"a job needs n >= 1 processes, got {n!r}")
    runner = ["-m", "mpi4py"] if mpi4py_main else []
    cmd = [mpiexec_path(), "-n", str(n), sys.executable, *runner, str(script)]
    cmd += [str(a) for a in args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=cwd, start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
        return JobResult(proc.returncode, out, err, False)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return JobResult(proc.returncode, out, err, True)
