"""How a GEMM-shaped product is cut into tasks for the worker pool's threads: blocks of whole
tiles of rows by every column block (so each task can run the product's fused epilogue
while its rows are in cache), or, with few rows for the threads, all the rows by a share of
the column blocks. Shared by graphc's own GEMM (``nativegemm.py``) and the packed
convolution (``packedgemm.py``), whose tiles of output pixels are its rows.
"""

from __future__ import annotations

from llvmlite import ir

from .irutil import I64

#: output elements per task at most (a task's rows of C stay in L2 for its epilogue)
TASK_FLOATS = 1 << 16
#: tasks per thread at least (when split over threads): the threads claim them from the pool
#: as they finish, which evens out tasks that do not split equally
TASKS_PER_THREAD = 4
#: fewer tiles of rows than this per thread: the threads split the column blocks instead.
#: 5: a 49-pixel convolution (ResNet-50's last stage at batch 1, ``packedgemm.py``) on 2
#: threads, the kernel alone on two Python threads (loaded machine, minimum of 30): 7x7x512
#: 3x3 panels split 1389 us, pixels split (5 tasks of 12) 1733; 1x1 512 -> 2048 677 vs 842
COLUMN_SPLIT_TILES = 5


def split_tasks(b, m, width, nblk, mr, nthr, columns=None):
    """How a product of ``m`` rows of ``width`` outputs, ``nblk`` column blocks (panels) of
    them, computed in tiles of ``mr`` rows, is cut into tasks for ``nthr`` threads (all i64
    values): (row blocks, column blocks per task, tasks, whether the threads split the column
    blocks). Tasks are blocks of whole tiles of rows by every column block (at most
    TASK_FLOATS outputs and at least TASKS_PER_THREAD a thread), so each task can run the
    GEMM's row epilogue while its rows are in cache; with fewer than COLUMN_SPLIT_TILES tiles a
    thread, or where ``columns`` (an i1) holds, the tasks are all the rows by a share of the
    column blocks instead. Row block i of R has the tiles [i * T / R, (i + 1) * T / R) of the
    T tiles (``row_range``): blocks differ by at most a tile, and R is a multiple of the
    threads, so each thread gets as many (a 196-pixel layer on 2 threads was 6 tasks of 30
    pixels and one of 16: one thread ran 106 pixels, the other 90)."""
    one = ir.Constant(I64, 1)

    def c64(v):
        return ir.Constant(I64, v)

    few = b.icmp_signed("<", m, b.mul(b.mul(nthr, mr), c64(COLUMN_SPLIT_TILES)))
    by_cols = b.and_(b.and_(few, b.icmp_signed(">", nthr, one)), b.icmp_signed(">=", nblk, nthr))
    if columns is not None:
        by_cols = b.or_(by_cols, columns)
    tiles = b.sdiv(b.add(m, b.sub(mr, one)), mr)
    want = b.sdiv(b.add(b.mul(m, width), c64(TASK_FLOATS - 1)), c64(TASK_FLOATS))
    least = b.select(b.icmp_signed(">", nthr, one), b.mul(nthr, c64(TASKS_PER_THREAD)), one)
    want = b.select(b.icmp_signed("<", want, least), least, want)
    want = b.select(b.icmp_signed("<", want, tiles), want, tiles)
    want = b.mul(b.sdiv(b.add(want, b.sub(nthr, one)), nthr), nthr)  # a multiple of nthr
    row_blocks = b.select(by_cols, one, b.select(b.icmp_signed("<", want, one), one, want))
    blocks = b.select(by_cols, b.sdiv(b.add(nblk, b.sub(nthr, one)), nthr), nblk)
    blocks = b.select(b.icmp_signed("<", blocks, one), one, blocks)
    groups = b.sdiv(b.add(nblk, b.sub(blocks, one)), blocks)
    tasks = b.mul(row_blocks, groups)
    return row_blocks, blocks, tasks, by_cols


def row_range(b, rb, row_blocks, m, mr):
    """Rows [r0, r1) of row block ``rb`` of ``row_blocks`` (``split_tasks``): whole tiles of
    ``mr`` rows, the last block ending at ``m``."""
    tiles = b.sdiv(b.add(m, b.sub(mr, ir.Constant(I64, 1))), mr)
    r0 = b.mul(b.sdiv(b.mul(rb, tiles), row_blocks), mr)
    r1 = b.mul(b.sdiv(b.mul(b.add(rb, ir.Constant(I64, 1)), tiles), row_blocks), mr)
    return r0, b.select(b.icmp_signed("<", r1, m), r1, m)
