"""gc.distribute: real 2- and 3-process MPI jobs on this machine against one process.

Each job is ``mpiexec -n N <this python> -m mpi4py tests/distribute/worker.py ...`` with a
subprocess timeout (``graphc.distribute.launch.run_job``). N processes with batch B must
end with the variables of one process with batch N*B (rtol 1e-5, 1e-4 with Adam; atol
1e-6 for entries near 0) after 20 steps, for the MLP with every gc.train optimizer (one
with clipping), and the CNN with Adam; the one-process run is itself checked against the
reference target.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc import config
from graphc.bench.runner import run_suite
from graphc.distribute import comm, launch


def _have_mpi() -> bool:
    """mpi4py installed and an mpiexec found (checked without starting MPI here)."""
    try:
        comm.require_installed()
        launch.mpiexec_path()
    except gc.errors.UnavailableError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _have_mpi(), reason="needs graphc[mpi]: mpi4py, mpich")

HERE = Path(__file__).resolve().parent
WORKER = HERE / "worker.py"
EXAMPLE = HERE.parents[1] / "examples" / "distributed_mlp.py"
B = 4  # rows per process and step
TIMEOUT = 120


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "GRAPHC_THREADS"}
    env.update(extra)
    return env


def _job(n, mode, out, batch=B, timeout=TIMEOUT, mpi4py_main=True, **env):
    out.mkdir(parents=True, exist_ok=True)
    return launch.run_job(n, WORKER, [mode, out, batch], timeout=timeout, env=_env(**env),
                          mpi4py_main=mpi4py_main)  # fmt: skip


def _baseline(out, batch, mode="train"):
    """The same worker as a job of one process (plain python: no mpiexec needed)."""
    out.mkdir(parents=True, exist_ok=True)
    res = subprocess.run([sys.executable, str(WORKER), mode, str(out), str(batch)],
                         capture_output=True, text=True, timeout=TIMEOUT, env=_env())  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return dict(np.load(out / "rank0.npz"))


def _ranks(out, n):
    return [dict(np.load(out / f"rank{r}.npz")) for r in range(n)]


def test_two_processes(tmp_path):
    """One 2-process job and its 1-process baseline (batch 2B), checked by the helpers below
    (one test: pytest-xdist would otherwise run the jobs once per worker)."""
    base = _baseline(tmp_path / "base", 2 * B)
    res = _job(2, "train", tmp_path / "job")
    assert res.returncode == 0 and not res.timed_out, res.stderr[-3000:]
    two = base, _ranks(tmp_path / "job", 2)
    check_n_processes_match_one_process_with_n_times_the_batch(two)
    check_ranks_end_bit_identical_and_start_equal_after_broadcast(two)
    check_one_process_matches_the_reference_target(two)
    check_collective_ops_values_and_gradients(two)
    check_saver_writes_on_rank_0_only_and_threads_share_the_cores(two)


def _models(d):
    return sorted({k.split("/")[0] for k in d if "/end/" in k and not k.startswith("ref_")})


def check_n_processes_match_one_process_with_n_times_the_batch(two):
    base, ranks = two
    models = _models(base)
    assert {"mlp_adam", "mlp_momentum", "mlp_sgd", "mlp_rmsprop", "mlp_adagrad", "cnn_adam"} \
        <= set(models)  # fmt: skip
    for m in models:
        ends = sorted(k for k in base if k.startswith(f"{m}/end/"))
        assert ends
        # N processes sum a gradient in another order than one (each its rows, then the
        # allreduce); Adam divides each step by the root of its second moment, so an entry
        # whose gradients stay near 0 moves by ~lr whatever their rounding: 20 Adam steps of
        # the CNN differ in the 5th digit (a wrong average or a missed bucket: in the 1st)
        rtol = 1e-4 if m.endswith("adam") else 1e-5
        for k in ends:
            for r, d in enumerate(ranks):
                np.testing.assert_allclose(d[k], base[k], rtol=rtol, atol=1e-6,
                                           err_msg=f"{k} on rank {r}")  # fmt: skip
            # and they moved: 20 steps changed every variable
            assert not np.allclose(base[k], base[k.replace("/end/", "/start/")])
        for d in ranks:
            assert int(d[f"{m}/global_step"]) == 20
            assert list(d[f"{m}/host_ops"]) == ["DistAllreduce"]


def check_ranks_end_bit_identical_and_start_equal_after_broadcast(two):
    base, (r0, r1) = two
    for k in r0:
        if "/start/" in k or "/end/" in k:
            np.testing.assert_array_equal(r0[k], r1[k], err_msg=k)
    # without the broadcast rank 1 would start from 1.5x rank 0's values (models.py)
    for k in r0:
        if "/start/" in k:
            np.testing.assert_array_equal(r0[k], base[k], err_msg=k)


def check_one_process_matches_the_reference_target(two):
    base, _ = two
    ends = [k for k in base if k.startswith("ref_mlp_adam/end/")]
    assert ends
    for k in ends:
        np.testing.assert_allclose(base[k[len("ref_") :]], base[k], rtol=1e-4, atol=1e-6)


def check_collective_ops_values_and_gradients(two):
    _, ranks = two
    n = len(ranks)
    w = np.array([1.0, 2.0, 3.0], np.float32)
    total = sum(r + 1 for r in range(n))
    for r, d in enumerate(ranks):
        for target in ("cpu", "reference"):
            p = f"ops/{target}/"
            np.testing.assert_array_equal(d[p + "sum"], np.full(3, total, np.float32))
            np.testing.assert_allclose(d[p + "avg"], np.full(3, total / n, np.float32))
            np.testing.assert_array_equal(d[p + "ints"], np.arange(4) * total)
            assert d[p + "ints"].dtype == np.int64
            np.testing.assert_array_equal(d[p + "floats"], np.full(3, 2 * total, np.float32))
            np.testing.assert_array_equal(d[p + "bcast"], np.full(3, n, np.float32))  # root n-1
            # d/dx sum_r(allreduce_sum(x) * w_r) = sum_r w_r on every rank
            np.testing.assert_allclose(d[p + "ds"], w * total)
            np.testing.assert_allclose(d[p + "da"], w * total / n, rtol=1e-6)
            # a broadcast's gradient reaches the root only
            np.testing.assert_allclose(d[p + "db"], w * total if r == n - 1 else 0 * w)
            assert d[p + "half"].dtype == np.float16
            np.testing.assert_array_equal(d[p + "half"], np.full(3, total, np.float16))
        np.testing.assert_array_equal(d["misc/vi"], np.arange(3) * n)
        assert d["misc/vh"].dtype == np.float16
        np.testing.assert_array_equal(d["misc/vh"], np.full(5, n, np.float16))
        np.testing.assert_array_equal(d["misc/vf"], np.full((2, 2), n, np.float32))
        # d/du of u^2 (r + 1) averaged over ranks: 2 * mean(r + 1); one SGD step of 0.1
        np.testing.assert_allclose(d["misc/u"], 1.0 - 0.1 * 2 * total / n, rtol=1e-6)
        assert float(d["misc/unused"]) == 2.0


def check_saver_writes_on_rank_0_only_and_threads_share_the_cores(two):
    _, (r0, r1) = two
    assert str(r0["saver_path"]).endswith("ckpt") and str(r1["saver_path"]) == ""
    for d in (r0, r1):
        threads, local = d["threads"]
        assert local == 2 and threads == max(1, config.cpu_count() // 2)
        calls, checks = d["stats"]
        # 6 models x 20 steps x 1 bucket, + 2 runs (cpu, reference) of the collectives graph
        # x 8 buckets (7 allreduce ops, the grouped one of 2 dtypes), + 1 optimizer step;
        # each op call checks the ranks agree first: + 6 models x 1 broadcast, + 2 x 1
        # broadcast in the collectives graph, + 1 broadcast_variables
        # + 6 check_same_variables (one per model)
        assert (calls, checks) == (6 * 20 + 2 * 8 + 1, 6 * 20 + 2 * 7 + 1 + 6 + 2 + 1 + 6)


def test_example_trains_on_two_processes_and_logs_once(tmp_path):
    ckpt = tmp_path / "model"
    args = ["--epochs", "1", "--checkpoint", ckpt]
    res = launch.run_job(2, EXAMPLE, args, timeout=TIMEOUT, env=_env())
    assert res.returncode == 0, res.stderr[-3000:]
    text = res.stdout + res.stderr
    assert text.count("epoch 1:") == 1 and "[rank 1]" not in text  # rank 0 logs
    acc = float(text.split("epoch 1:")[1].split("test accuracy")[1].split("%")[0])
    assert acc > 70  # one epoch of 21 steps: ~85% (10% is chance)
    assert list(tmp_path.glob("model-*")) and "2 process(es)" in text


def test_docs_program_runs_on_two_processes(tmp_path):
    """The program of docs/distributed.md (skipped by tests/test_docs.py: it starts MPI)."""
    text = (HERE.parents[1] / "docs" / "distributed.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "train.py"
    script.write_text(code)
    res = launch.run_job(2, script, timeout=TIMEOUT, env=_env())
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert out.count("w = [") == 1 and "[rank 0] w = [ 1.  -2.   0.5  3. ]" in out, out


def test_bench_w14_quick():
    result = run_suite(suite="W14", quick=True, repeat=2, progress=False)
    (w,) = result.workloads
    assert result.ok and w.status == "ok", (w.status, w.reason, [i.reason for i in w.impls])
    assert [i.status for i in w.impls] == ["ok", "ok"]
    assert w.speedups["throughput_2_processes_over_1"] > 0
    assert any(n.startswith("2-process step") and "allreduce" in n for n in w.notes)
    assert all(i.max_abs_err < 1e-4 and i.extra["same_variables"] for i in w.impls)


def test_three_processes(tmp_path):
    base = _baseline(tmp_path / "base", 3 * B, mode="train3")
    # small buckets: the MLP's gradients (w1 alone is 8 KiB) take several MPI calls a step
    res = _job(3, "train3", tmp_path / "job", GRAPHC_DIST_BUCKET_BYTES="4096")
    assert res.returncode == 0 and not res.timed_out, res.stderr[-3000:]
    for r, d in enumerate(_ranks(tmp_path / "job", 3)):
        assert int(d["stats"][0]) > 20 * 2
        ends = [k for k in base if "/end/" in k]
        assert len(ends) == 6
        for k in ends:
            np.testing.assert_allclose(d[k], base[k], rtol=1e-5, atol=1e-6, err_msg=f"{k} {r}")


def _failing_job(tmp_path, mode, mpi4py_main=True, **env):
    t0 = time.monotonic()
    res = _job(2, mode, tmp_path, timeout=60, mpi4py_main=mpi4py_main, **env)
    took = time.monotonic() - t0
    assert not res.timed_out, f"job {mode} hung: {res.stderr[-2000:]}"
    assert res.returncode != 0
    return res, took


@pytest.mark.parametrize("mpi4py_main", [True, False], ids=["python -m mpi4py", "python"])
def test_a_rank_that_raises_ends_the_job_naming_it(tmp_path, mpi4py_main):
    # without -m mpi4py, the exception hook of gc.distribute.init() aborts the job
    res, took = _failing_job(tmp_path, "raise", mpi4py_main)
    assert "rank 1 of 2" in res.stderr and "boom on purpose" in res.stderr
    assert took < 30


def test_a_killed_rank_ends_the_job(tmp_path):
    res, took = _failing_job(tmp_path, "kill")
    assert "signal 9" in res.stdout + res.stderr
    assert took < 30


def test_mismatched_graphs_raise_naming_the_difference(tmp_path):
    res, _ = _failing_job(tmp_path, "mismatch")
    assert "FailedPreconditionError" in res.stderr
    assert "'w1' of shape (64, 33)" in res.stderr and "(64, 32)" in res.stderr


def test_diverging_variables_are_named(tmp_path):
    res, _ = _failing_job(tmp_path, "diverge")
    assert "FailedPreconditionError" in res.stderr
    assert "rank 1's value of 'w1' differs from rank 0's" in res.stderr


def test_a_hanging_rank_times_the_collective_out(tmp_path):
    res, took = _failing_job(tmp_path, "hang", GRAPHC_DIST_TIMEOUT="3")
    assert "rank 0 of 2 waited 3 s" in res.stderr and "GRAPHC_DIST_TIMEOUT" in res.stderr
    assert took < 40


def test_a_rank_that_never_joins_times_init_out(tmp_path):
    res, took = _failing_job(tmp_path, "noinit", GRAPHC_DIST_TIMEOUT="2")
    assert "rank 0 of 2 waited 2 s in init" in res.stderr
    assert took < 40


# -- in this process: no MPI is started --------------------------------------------------------


def test_buckets_group_by_dtype_and_size():
    f32 = [np.zeros(n, np.float32) for n in (10, 10, 300, 5)]
    i64 = np.zeros(3, np.int64)
    half = np.zeros(4, np.float16)  # summed in float32: shares float32's buckets
    got = comm.buckets([f32[0], i64, f32[1], f32[2], half, f32[3]], bucket_bytes=100)
    assert got == [[0, 2], [1], [3], [4, 5]]
    assert comm.buckets(f32, bucket_bytes=1 << 20) == [[0, 1, 2, 3]]


def test_difference_names_what_differs():
    base = ("allreduce", "opt/allreduce", ("average", None), [("w", "float32", (2, 3))])
    text = comm._difference([base, base[:3] + ([("w", "float32", (2, 4))],)])
    assert "rank 1 has 'w' of shape (2, 4) float32" in text and "(2, 3)" in text
    text = comm._difference([base, base[:3] + ([],)])
    assert "rank 1 has no 'w'" in text
    text = comm._difference([base, ("broadcast",) + base[1:]])
    assert "runs broadcast" in text
    text = comm._difference([base, (base[0], base[1], ("average", None, 4096), base[3])])
    assert "with ('average', None, 4096), rank 0 with ('average', None)" in text
    values = [base[:3] + ([("w", "float32", (2, 3), h)],) for h in ("aa", "aa", "bb")]
    assert comm._difference(values) == "gc.distribute: rank 2's value of 'w' differs from rank 0's"


class _FakeRequests:
    """Stands in for mpi4py's MPI module in ``comm._wait``: requests complete after
    ``polls`` calls of Testall (None: never)."""

    def __init__(self, polls):
        self.polls, self.calls = polls, 0
        fake = self

        class Request:
            @staticmethod
            def Testall(reqs):  # noqa: N802 - mpi4py's name
                fake.calls += 1
                return fake.polls is not None and fake.calls >= fake.polls

            @staticmethod
            def Waitall(reqs):  # noqa: N802
                raise AssertionError("a bounded wait must not block")

        self.Request = Request


@pytest.mark.parametrize("patient", [False, True])
def test_waits_poll_until_done_or_time_out(monkeypatch, patient):
    monkeypatch.setattr(comm._state, "mpi", _FakeRequests(2000))
    monkeypatch.setenv("GRAPHC_DIST_TIMEOUT", "5")
    comm._wait(["req"], "allreduce 'x'", patient)
    assert comm._state.mpi.calls == 2000
    monkeypatch.setattr(comm._state, "mpi", _FakeRequests(None))
    monkeypatch.setenv("GRAPHC_DIST_TIMEOUT", "0.3")
    t0 = time.monotonic()
    with pytest.raises(gc.errors.UnavailableError, match=r"rank 0 of 1 waited 0.3 s in init"):
        comm._wait(["req"], "init", patient)
    assert 0.3 <= time.monotonic() - t0 < 3


def test_build_time_errors():
    with pytest.raises(ValueError, match="bucket_bytes"):
        gc.distribute.grouped_allreduce([gc.constant([1.0])], bucket_bytes=0)
    x = gc.placeholder(gc.float32, (3,))
    with pytest.raises(ValueError, match="'average' or 'sum'"):
        gc.distribute.allreduce(x, op="max")
    with pytest.raises(TypeError, match="average.*floating"):
        gc.distribute.allreduce(gc.constant([1, 2]), op="average")
    with pytest.raises(TypeError, match="bool"):
        gc.distribute.allreduce(gc.constant([True]), op="sum")
    with pytest.raises(TypeError, match="wraps a gc.train optimizer"):
        gc.distribute.DistributedOptimizer(object())
    with pytest.raises(ValueError, match="root_rank"):
        gc.distribute.broadcast(x, root_rank=-1)
    with pytest.raises(ValueError, match="no global variables"):
        gc.distribute.broadcast_global_variables()


def test_without_mpi4py_calls_say_what_to_install():
    code = (
        "import sys; sys.modules['mpi4py'] = None\n"
        "import graphc as gc\n"
        "for f in (gc.distribute.init, gc.distribute.rank, "
        "lambda: gc.distribute.allreduce(gc.constant([1.0]))):\n"
        "    try:\n        f()\n    except gc.errors.UnavailableError as e:\n"
        "        print('OK', e)\n"
        "    else:\n        print('NO ERROR')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=_env())  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 3 and all(
        line.startswith("OK") and "pip install graphc[mpi]" in line for line in lines
    ), res.stdout
