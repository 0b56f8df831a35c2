"""``gc_loop_drive``: the iterations of a loop with a known trip count in one native call.

A ``While`` without a condition (``scan``, ``map_fn``, ``foldl``, ``dynamic_rnn`` and their
gradients) runs its compiled body once per iteration. After the first iteration every later
one binds the same buffers, moved: a sliced input's row and a stacked output's row advance by
one row per iteration, and a loop variable alternates between two arrays (the body reads one
and writes the other). So the whole rest of the loop is data for one native function, which
per iteration writes each moving buffer's data pointer into its descriptor, calls the body's
``gc_entry``, then copies the rows that are not written in place (a stacked value that is also
a loop variable or one of the body's inputs). ``graphc/backends/cpu/native_loop.py`` builds
the tables; the function lives in the worker pool's object (``pool.py``), compiled once per
process.

    void gc_loop_drive(ptr entry, ptr bufs, ptr dims, i32 nthreads, i64 i0, i64 trips,
                       i64 reverse, ptr moves, i64 nmoves, ptr copies, i64 ncopies)

Iteration ``i`` in [i0, trips) uses row ``at = reverse ? trips - 1 - i : i`` and parity
``par = i & 1``. ``moves[j] = {ptr word, i64 base, i64 at_stride, i64 par_stride}``: ``*word
= base + at * at_stride + par * par_stride`` before the call. ``copies[j] = {i64 dst, i64
dst_at, i64 src, i64 src_at, i64 src_par, i64 nbytes}``: after the call, ``nbytes`` from
``src + at * src_at + par * src_par`` to ``dst + at * dst_at``.
"""

from __future__ import annotations

SYMBOL = "gc_loop_drive"

DRIVE_IR = r"""
; graphc loop driver: see graphc/backends/llvm/loopdrive.py
%gc.move = type { ptr, i64, i64, i64 }
%gc.copy = type { i64, i64, i64, i64, i64, i64 }

declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)

define void @gc_loop_drive(ptr %entry, ptr %bufs, ptr %dims, i32 %nthreads, i64 %i0,
                           i64 %trips, i64 %reverse, ptr %moves, i64 %nmoves, ptr %copies,
                           i64 %ncopies) {
start:
  %isrev = icmp ne i64 %reverse, 0
  %last = sub i64 %trips, 1
  br label %head
head:
  %i = phi i64 [ %i0, %start ], [ %inext, %cdone ]
  %more = icmp slt i64 %i, %trips
  br i1 %more, label %body, label %done
body:
  %revat = sub i64 %last, %i
  %at = select i1 %isrev, i64 %revat, i64 %i
  %par = and i64 %i, 1
  br label %mhead
mhead:
  %m = phi i64 [ 0, %body ], [ %mnext, %mbody ]
  %mmore = icmp slt i64 %m, %nmoves
  br i1 %mmore, label %mbody, label %call
mbody:
  %mp = getelementptr %gc.move, ptr %moves, i64 %m
  %wordp = getelementptr %gc.move, ptr %mp, i64 0, i32 0
  %word = load ptr, ptr %wordp
  %basep = getelementptr %gc.move, ptr %mp, i64 0, i32 1
  %base = load i64, ptr %basep
  %sap = getelementptr %gc.move, ptr %mp, i64 0, i32 2
  %sa = load i64, ptr %sap
  %spp = getelementptr %gc.move, ptr %mp, i64 0, i32 3
  %sp = load i64, ptr %spp
  %oa = mul i64 %at, %sa
  %op = mul i64 %par, %sp
  %v0 = add i64 %base, %oa
  %v = add i64 %v0, %op
  store i64 %v, ptr %word
  %mnext = add i64 %m, 1
  br label %mhead
call:
  %rc = call i32 %entry(ptr %bufs, ptr %dims, ptr null, i32 %nthreads)
  br label %chead
chead:
  %c = phi i64 [ 0, %call ], [ %cnext, %cbody ]
  %cmore = icmp slt i64 %c, %ncopies
  br i1 %cmore, label %cbody, label %cdone
cbody:
  %cp = getelementptr %gc.copy, ptr %copies, i64 %c
  %f0p = getelementptr %gc.copy, ptr %cp, i64 0, i32 0
  %dst = load i64, ptr %f0p
  %f1p = getelementptr %gc.copy, ptr %cp, i64 0, i32 1
  %dsta = load i64, ptr %f1p
  %f2p = getelementptr %gc.copy, ptr %cp, i64 0, i32 2
  %src = load i64, ptr %f2p
  %f3p = getelementptr %gc.copy, ptr %cp, i64 0, i32 3
  %srca = load i64, ptr %f3p
  %f4p = getelementptr %gc.copy, ptr %cp, i64 0, i32 4
  %srcp = load i64, ptr %f4p
  %f5p = getelementptr %gc.copy, ptr %cp, i64 0, i32 5
  %nbytes = load i64, ptr %f5p
  %d1 = mul i64 %at, %dsta
  %d = add i64 %dst, %d1
  %s1 = mul i64 %at, %srca
  %s2 = mul i64 %par, %srcp
  %s3 = add i64 %src, %s1
  %s = add i64 %s3, %s2
  %dptr = inttoptr i64 %d to ptr
  %sptr = inttoptr i64 %s to ptr
  call void @llvm.memcpy.p0.p0.i64(ptr %dptr, ptr %sptr, i64 %nbytes, i1 false)
  %cnext = add i64 %c, 1
  br label %chead
cdone:
  %inext = add i64 %i, 1
  br label %head
done:
  ret void
}
"""
