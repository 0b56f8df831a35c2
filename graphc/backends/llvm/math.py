"""Vectorisable transcendental functions emitted as LLVM IR.

LLVM lowers a vector ``llvm.exp`` to one scalar libm call per lane, which stops the loop
vectoriser cold. So every transcendental of the Kernel IR is emitted here as straight-line
IR (range reduction, polynomial, exponent-bit tricks; branches become ``select``s) in an
``alwaysinline`` internal function, one per (function, type) and module. After inlining, the
loop vectoriser turns it into 512-bit code on AVX-512 machines.

Algorithms (Cephes-style, constants from Cephes / Eigen where named):

* ``exp``: x clamped to just outside the finite range of exp (NaN passes), n = rint(x / ln2)
  by adding 1.5 2^23 (2^52) and read off the bits (no float-to-int conversion),
  r = x - n ln2 (Cody-Waite 2-part ln2), exp(r) by Cephes expf's polynomial 1 + r + r^2 P5(r)
  in plain Horner form (f32; one rounding less than Cephes' grouping) or the degree-13
  Taylor series (f64), scaled by 2^n with ``llvm.ldexp`` (one ``vscalefps`` with AVX-512) or,
  elsewhere, as two exponent-bit multiplications (so subnormal results come out right).
  Overflow to inf and underflow to 0 come out of that scaling: no selects.
* ``log``: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) = 2 atanh(s), s = (m-1)/(m+1),
  by the odd series in s (|s| <= 0.172); subnormals are pre-scaled by 2^25.
* ``log1p(x) = log(u) - ((u-1)-x)/u`` with u = 1+x (Goldberg), ``expm1(x) = (u-1) x / log u``
  with u = exp(x) (Kahan): both accurate near 0 with no branches.
* ``tanh`` (f32): Eigen's rational approximation on [-7.9, 7.9] (one division, no exp;
  x times num/den, so tiny and subnormal x come back unchanged).
  ``tanh`` (f64): |x| < 0.625: x + x z P(z)/Q(z) (Cephes); else 1 - 2/(exp(2|x|)+1).
* ``sigmoid``: e = exp(-|x|); x >= 0 ? 1/(1+e) : e/(1+e) (the reference formula).
* ``erf`` (f32): Eigen/XLA's rational approximation on [-4, 4] (odd degree 13 / even degree
  8). ``erf`` (f64): |x| < 1: Taylor series; else 1 - exp(-x^2) * R(x) with R a Chebyshev fit
  of the scaled erfc on [1, 6] (erf = +-1 in float64 beyond 6).
* ``sin``/``cos``/``tan``: n = rint(x 2/pi) and r = x - n pi/2 in float64 with pi/2 split
  in three (Cody-Waite), then Cephes' sin/cos polynomials on [-pi/4, pi/4] and the quadrant
  n mod 4. Accurate for |x| up to ~1e9 (f64: ~1e6 for full accuracy); beyond that the
  reduction loses bits (numpy uses Payne-Hanek).

Measured maximum errors (tests/backends/test_llvm_math.py, ``pytest -s`` prints them; dense
sweeps of 200k points over the domain plus tiny arguments, against float64 libm /
``math.erf``; ulp of the result type):

    function  domain           float32   float64
    exp       [-100, 88]       0.83 ulp  1.00 ulp
    expm1     [-20, 20]        2.97      3.00
    log       [1e-30, 1e30]    1.81      2.00
    log1p     [-0.999, 1e6]    2.03      2.00
    tanh      [-12, 12]        4.50      2.00
    sigmoid   [-40, 40]        2.39      3.00
    erf       [-5, 5]          5.39      3.00
    sin, cos  [-100, 100]      1.5       2.00
    tan       [-1.5, 1.5]      2.88      3.00

(For W1's float32 chain that is a max abs error of ~4e-6 on outputs of magnitude ~10.)
Special values follow numpy (the clamps that keep polynomials in range pass NaN through,
so NaN needs no select where the arithmetic propagates it): NaN in -> NaN out,
exp(+-inf) = inf/0, log(0) = -inf, log(x<0) = NaN, sin/cos(inf) = NaN, overflow to inf and
underflow through subnormals to 0.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
from llvmlite import ir

F32 = ir.FloatType()
F64 = ir.DoubleType()
HALF = ir.HalfType()
I1 = ir.IntType(1)
I32 = ir.IntType(32)
I64 = ir.IntType(64)

#: Kernel-IR Math members this module implements (name -> emitter name)
TRANSCENDENTAL = ("EXP", "EXPM1", "LOG", "LOG1P", "TANH", "SIGMOID", "ERF", "SIN", "COS", "TAN")


class _B:
    """Small arithmetic helper around an IRBuilder for one float type."""

    def __init__(self, builder: ir.IRBuilder, ty, module: ir.Module):
        self.b = builder
        self.t = ty
        self.m = module
        self.is64 = ty == F64
        self.ity = I64 if self.is64 else I32

    def c(self, v):
        return ir.Constant(self.t, float(v))

    def ci(self, v):
        return ir.Constant(self.ity, int(v))

    def intr(self, name, *args):
        return self.b.call(intrinsic(self.m, name, args[0].type, len(args)), list(args))

    def add(self, a, b):
        return self.b.fadd(a, b)

    def sub(self, a, b):
        return self.b.fsub(a, b)

    def mul(self, a, b):
        return self.b.fmul(a, b)

    def div(self, a, b):
        return self.b.fdiv(a, b)

    def fma(self, a, b, c):
        # fmuladd: fused where the CPU has FMA, so results match across vector widths
        return self.intr("llvm.fmuladd", a, b, c)

    def horner(self, x, coeffs):
        """coeffs from the highest degree down to the constant term."""
        acc = self.c(coeffs[0])
        for k in coeffs[1:]:
            acc = self.fma(acc, x, self.c(k))
        return acc

    def sel(self, cond, a, b):
        return self.b.select(cond, a, b)

    def lt(self, a, b):
        return self.b.fcmp_ordered("<", a, b)

    def gt(self, a, b):
        return self.b.fcmp_ordered(">", a, b)

    def eq(self, a, b):
        return self.b.fcmp_ordered("==", a, b)

    def isnan(self, a):
        return self.b.fcmp_unordered("uno", a, a)

    def abs(self, a):
        return self.intr("llvm.fabs", a)

    def copysign(self, a, s):
        return self.intr("llvm.copysign", a, s)

    def rint(self, a):
        return self.intr("llvm.rint", a)

    def clamp(self, x, lo, hi):
        # NaN-free result: ordered compares send NaN to the bounds
        x = self.sel(self.gt(x, self.c(lo)), x, self.c(lo))
        return self.sel(self.lt(x, self.c(hi)), x, self.c(hi))

    def clamp_nan(self, x, lo, hi):
        """x limited to [lo, hi], NaN passed through (one vmaxps/vminps each, like clamp):
        the NaN then flows through the arithmetic and needs no select of its own."""
        x = self.sel(self.lt(x, self.c(lo)), self.c(lo), x)
        return self.sel(self.gt(x, self.c(hi)), self.c(hi), x)

    def bits(self, a):
        return self.b.bitcast(a, self.ity)

    def from_bits(self, i):
        return self.b.bitcast(i, self.t)

    def pow2i(self, n):
        """2**n for an integer n inside the normal exponent range."""
        mant = 52 if self.is64 else 23
        bias = 1023 if self.is64 else 127
        return self.from_bits(self.b.shl(self.b.add(n, self.ci(bias)), self.ci(mant)))


# -- exp / log ----------------------------------------------------------------------------------


def _exp(m: _B, x):
    # The clamp bounds lie just outside the finite range of exp: there the scaling by 2^n
    # itself rounds to inf (n = 128 / 1024) or to 0 (p 2^n below half the smallest
    # subnormal), so overflow, underflow and +-inf need no selects; NaN passes the clamp
    # and the arithmetic. n = rint(x / ln2) comes from adding 1.5 2^mant (the add rounds to
    # an integer): its integer value is then the bit pattern minus that of 1.5 2^mant, with
    # no float-to-int conversion (poison for NaN in LLVM IR).
    if m.is64:
        lo, hi, shift, sbits = -746.0, 710.0, 1.5 * 2.0**52, 0x4338000000000000
    else:
        lo, hi, shift, sbits = -104.0, 89.0, 1.5 * 2.0**23, 0x4B400000
    xc = m.clamp_nan(x, lo, hi)
    t = m.fma(xc, m.c(1.4426950408889634), m.c(shift))
    n = m.sub(t, m.c(shift))
    if m.is64:
        r = m.fma(n, m.c(-6.93145751953125e-1), xc)
        r = m.fma(n, m.c(-1.42860682030941723212e-6), r)
        coeffs = [
            1.0 / float(np.prod(np.arange(1, k + 1, dtype=np.float64))) for k in range(13, -1, -1)
        ]
        p = m.horner(r, coeffs)
    else:
        r = m.fma(n, m.c(-0.693359375), xc)
        r = m.fma(n, m.c(2.12194440e-4), r)
        p = m.horner(
            r,
            [
                1.9875691500e-4,
                1.3981999507e-3,
                8.3334519073e-3,
                4.1665795894e-2,
                1.6666665459e-1,
                5.0000001201e-1,
                1.0,
                1.0,
            ],
        )
    ni = m.b.sub(m.bits(t), m.ci(sbits))  # n as an integer
    if flag("ldexp"):
        ni32 = m.b.trunc(ni, I32) if m.is64 else ni
        return m.b.call(_ldexp(m.m, m.t), [p, ni32])  # AVX-512: one vscalefps
    n1 = m.b.ashr(ni, m.ci(1))
    n2 = m.b.sub(ni, n1)  # two steps: 2^n itself may be subnormal or overflow
    return m.mul(m.mul(p, m.pow2i(n1)), m.pow2i(n2))


#: host properties the emitters adapt to (set by jit.py from the host's features)
HOST = {"ldexp": False, "avx512f": False}
#: the properties of the CPU the code being rendered on this thread is for, when it is not the
#: host (``using``: an export for another CPU must not use the host's AVX-512 ldexp)
_TARGET: ContextVar = ContextVar("graphc_llvm_target_flags", default=None)


def flag(name: str):
    """A property of the CPU the code being rendered is for (``using``; else the host's)."""
    flags = _TARGET.get()
    return (HOST if flags is None else flags)[name]


@contextmanager
def using(flags: dict | None):
    """Render for a CPU with the properties ``flags`` (``jit.target_flags``; None: the host's,
    ``HOST``) in this block."""
    token = _TARGET.set(flags)
    try:
        yield
    finally:
        _TARGET.reset(token)


def _ldexp(module, ty):
    name = f"llvm.ldexp.{_suffix(ty)}.i32"
    try:
        return module.get_global(name)
    except KeyError:
        return ir.Function(module, ir.FunctionType(ty, [ty, I32]), name)


def _log(m: _B, x):
    mant = 52 if m.is64 else 23
    bias = 1023 if m.is64 else 127
    tiny = 2.2250738585072014e-308 if m.is64 else 1.1754943508222875e-38
    scale_e = 54 if m.is64 else 25
    sub = m.lt(x, m.c(tiny))
    xs = m.sel(sub, m.mul(x, m.c(2.0**scale_e)), x)
    bits = m.bits(xs)
    e = m.b.sub(m.b.ashr(bits, m.ci(mant)), m.ci(bias))
    mbits = m.b.or_(m.b.and_(bits, m.ci((1 << mant) - 1)), m.ci(bias << mant))
    mm = m.from_bits(mbits)  # in [1, 2)
    big = m.gt(mm, m.c(1.4142135623730951))
    mm = m.sel(big, m.mul(mm, m.c(0.5)), mm)
    e = m.sel(big, m.b.add(e, m.ci(1)), e)
    ef = m.b.sitofp(e, m.t)
    ef = m.sel(sub, m.sub(ef, m.c(scale_e)), ef)
    s = m.div(m.sub(mm, m.c(1.0)), m.add(mm, m.c(1.0)))
    z = m.mul(s, s)
    nterms = 11 if m.is64 else 5
    coeffs = [2.0 / (2 * k + 1) for k in range(nterms, 0, -1)]  # 2/(2k+1), k >= 1
    tail = m.mul(m.mul(s, z), m.horner(z, coeffs))
    # log m = 2s + tail; add e ln2 in two parts for accuracy
    y = m.fma(ef, m.c(1.9082149292705877e-10 if m.is64 else -2.12194440e-4), tail)
    y = m.add(m.add(s, s), y)
    y = m.fma(ef, m.c(0.6931471803691238 if m.is64 else 0.693359375), y)
    y = m.sel(m.eq(x, m.c(np.inf)), x, y)
    y = m.sel(m.eq(x, m.c(0.0)), m.c(-np.inf), y)
    y = m.sel(m.lt(x, m.c(0.0)), m.c(np.nan), y)
    return m.sel(m.isnan(x), x, y)


def _log1p(m: _B, x):
    u = m.add(x, m.c(1.0))
    lu = _call(m, "LOG", u)
    d = m.sub(m.sub(u, m.c(1.0)), x)
    y = m.sub(lu, m.div(d, u))
    y = m.sel(m.eq(u, m.c(1.0)), x, y)
    return m.sel(m.eq(u, m.c(np.inf)), u, y)


def _expm1(m: _B, x):
    u = _call(m, "EXP", x)
    um1 = m.sub(u, m.c(1.0))
    y = m.div(m.mul(um1, x), _call(m, "LOG", u))
    # u beyond 2^(mantissa+2): u - 1 is already exact to the last bit (and (u-1) x above
    # would overflow for x near the overflow threshold of exp)
    y = m.sel(m.gt(u, m.c(2.0 ** (54 if m.is64 else 25))), um1, y)
    y = m.sel(m.eq(um1, m.c(-1.0)), m.c(-1.0), y)
    y = m.sel(m.eq(u, m.c(1.0)), x, y)
    y = m.sel(m.eq(u, m.c(np.inf)), u, y)
    return m.sel(m.isnan(x), x, y)


# -- tanh / sigmoid / erf -----------------------------------------------------------------------


def _tanh(m: _B, x):
    a = m.abs(x)
    z = m.mul(x, x)
    if m.is64:
        p = m.horner(
            z, [-9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3]
        )
        q = m.horner(
            z, [1.0, 1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3]
        )
        small = m.fma(m.mul(x, z), m.div(p, q), x)
    else:
        # Eigen's rational approximation (odd 13 / even 6) on [-7.9053, 7.9053]: one
        # division, no exp; |x| < 4e-4 returns x (tanh x = x to float32 precision there)
        xc = m.clamp_nan(x, -7.90531110763549805, 7.90531110763549805)
        z = m.mul(xc, xc)
        num = m.horner(
            z,
            [
                -2.76076847742355e-16,
                2.00018790482477e-13,
                -8.60467152213735e-11,
                5.12229709037114e-08,
                1.48572235717979e-05,
                6.37261928875436e-04,
                4.89352455891786e-03,
            ],
        )
        den = m.horner(
            z,
            [
                1.19825839466702e-06,
                1.18534705686654e-04,
                2.26843463243900e-03,
                4.89352518554385e-03,
            ],
        )
        # NaN passes the clamp and the arithmetic; tiny |x| needs no select of its own
        # (num/den = 1 - 1.3e-7 at 0: within the documented error; subnormal x keep their
        # value and -0 stays -0 as x is multiplied by the ratio last)
        return m.mul(xc, m.div(num, den))
    e = _call(m, "EXP", m.add(a, a))
    large = m.copysign(m.sub(m.c(1.0), m.div(m.c(2.0), m.add(e, m.c(1.0)))), x)
    return m.sel(m.lt(a, m.c(0.625)), small, large)


def _sigmoid(m: _B, x):
    a = m.abs(x)
    e = _call(m, "EXP", m.b.fneg(a))
    pos = m.div(m.c(1.0), m.add(m.c(1.0), e))
    neg = m.mul(e, pos)  # e / (1 + e) with one division
    # a NaN x gives a NaN e (exp passes it through), so pos and neg are NaN already
    return m.sel(m.b.fcmp_ordered(">=", x, m.c(0.0)), pos, neg)


def _erf_f32(m: _B, x):
    xc = m.clamp_nan(x, -4.0, 4.0)  # NaN passes through to the result
    z = m.mul(xc, xc)
    num = m.horner(
        z,
        [
            -2.72614225801306e-10,
            2.77068142495902e-08,
            -2.10102402082508e-06,
            -5.69250639462346e-05,
            -7.34990630326855e-04,
            -2.95459980854025e-03,
            -1.60960333262415e-02,
        ],
    )
    den = m.horner(
        z,
        [
            -1.45660718464996e-05,
            -2.13374055278905e-04,
            -1.68282697438203e-03,
            -7.37332916720468e-03,
            -1.42647390514189e-02,
        ],
    )
    return m.div(m.mul(xc, num), den)


def _erfc_scaled_cheb() -> list:
    """Chebyshev coefficients of g(t) = erfc(x) exp(x^2) x on x in [1, 6], t mapped to [-1, 1]."""
    deg = 40
    k = np.arange(deg * 2)
    nodes = np.cos(np.pi * (k + 0.5) / (deg * 2))
    xs = 3.5 + 2.5 * nodes
    ys = np.array([math.erfc(v) * math.exp(v * v) * v for v in xs])
    return list(np.polynomial.chebyshev.chebfit(nodes, ys, deg))


_ERFC_CHEB = None


def _erf_f64(m: _B, x):
    global _ERFC_CHEB
    if _ERFC_CHEB is None:
        _ERFC_CHEB = _erfc_scaled_cheb()
    a = m.abs(x)
    z = m.mul(x, x)
    # Taylor: erf x = 2/sqrt(pi) sum (-1)^n x^(2n+1) / (n! (2n+1)); 22 terms reach 1e-17 at |x|=1
    coeffs = []
    fact = 1.0
    for n in range(0, 23):
        if n:
            fact *= n
        coeffs.append((-1) ** n / (fact * (2 * n + 1)) * 1.1283791670955126)
    small = m.mul(x, m.horner(z, coeffs[::-1]))
    # Clenshaw on t = (|x| - 3.5) / 2.5 for g = erfc(|x|) exp(x^2) |x|
    ac = m.clamp(a, 1.0, 6.0)
    t = m.mul(m.sub(ac, m.c(3.5)), m.c(0.4))
    t2 = m.add(t, t)
    b1 = m.c(0.0)
    b2 = m.c(0.0)
    for ck in _ERFC_CHEB[:0:-1]:
        b1, b2 = m.add(m.fma(t2, b1, m.c(ck)), m.b.fneg(b2)), b1
    g = m.sub(m.fma(t, b1, m.c(_ERFC_CHEB[0])), b2)
    erfc = m.div(m.mul(g, _call(m, "EXP", m.b.fneg(m.mul(ac, ac)))), ac)
    large = m.copysign(m.sub(m.c(1.0), erfc), x)
    large = m.sel(m.gt(a, m.c(6.0)), m.copysign(m.c(1.0), x), large)
    y = m.sel(m.lt(a, m.c(1.0)), small, large)
    return m.sel(m.isnan(x), x, y)


# -- sin / cos / tan ----------------------------------------------------------------------------


def _reduce_half_pi(m: _B, x):
    """(r, quadrant) with x = r + quadrant * pi/2, |r| <= pi/4; r in x's type."""
    b = m.b
    xd = x if m.is64 else b.fpext(x, F64)
    d = _B(b, F64, m.m)
    n = d.rint(d.mul(d.clamp(xd, -1e15, 1e15), d.c(0.6366197723675814)))
    r = d.fma(n, d.c(-1.57079632673412561417e00), xd)
    r = d.fma(n, d.c(-6.07710050630396597660e-11), r)
    r = d.fma(n, d.c(-2.02226624879595063154e-21), r)
    q = b.trunc(b.fptosi(n, I64), I32)
    if not m.is64:
        r = b.fptrunc(r, F32)
    return r, b.and_(q, ir.Constant(I32, 3))


def _sin_cos_poly(m: _B, r):
    z = m.mul(r, r)
    if m.is64:
        sp = m.horner(
            z,
            [
                1.58962301576546568060e-10,
                -2.50507477628578072866e-8,
                2.75573136213857245213e-6,
                -1.98412698295895385996e-4,
                8.33333333332211858878e-3,
                -1.66666666666666307295e-1,
            ],
        )
        cp = m.horner(
            z,
            [
                -1.13585365213876817300e-11,
                2.08757008419747316778e-9,
                -2.75573141792967388112e-7,
                2.48015872888517045348e-5,
                -1.38888888888730564116e-3,
                4.16666666666665929218e-2,
            ],
        )
    else:
        sp = m.horner(z, [-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1])
        cp = m.horner(z, [2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2])
    s = m.fma(m.mul(r, z), sp, r)
    c = m.fma(m.mul(z, z), cp, m.fma(z, m.c(-0.5), m.c(1.0)))
    return s, c


def _sincos(m: _B, x, which: str):
    b = m.b
    r, q = _reduce_half_pi(m, x)
    s, c = _sin_cos_poly(m, r)
    odd = b.icmp_unsigned("!=", b.and_(q, ir.Constant(I32, 1)), ir.Constant(I32, 0))
    if which == "TAN":
        y = m.div(m.sel(odd, c, s), m.sel(odd, b.fneg(s), c))
    else:
        if which == "COS":
            q = b.add(q, ir.Constant(I32, 1))
            odd = b.icmp_unsigned("!=", b.and_(q, ir.Constant(I32, 1)), ir.Constant(I32, 0))
        neg = b.icmp_unsigned("!=", b.and_(q, ir.Constant(I32, 2)), ir.Constant(I32, 0))
        y = m.sel(odd, c, s)
        y = m.sel(neg, b.fneg(y), y)
    y = m.sel(m.eq(m.abs(x), m.c(np.inf)), m.c(np.nan), y)
    return m.sel(m.isnan(x), x, y)


def _suffix(ty) -> str:
    if isinstance(ty, ir.IntType):
        return f"i{ty.width}"
    return {F32: "f32", F64: "f64", HALF: "f16"}[ty]


def intrinsic(module: ir.Module, name: str, ty, nargs: int = 1, ret=None) -> ir.Function:
    """Declare (once) an overloaded intrinsic ``name.<ty>`` taking ``nargs`` operands of ``ty``.

    ``ret`` given: a conversion intrinsic ``name.<ret>.<ty>`` (e.g. llvm.fptosi.sat).
    """
    full = f"{name}.{_suffix(ret)}.{_suffix(ty)}" if ret is not None else f"{name}.{_suffix(ty)}"
    try:
        return module.get_global(full)
    except KeyError:
        return ir.Function(module, ir.FunctionType(ret or ty, [ty] * nargs), full)


_EMITTERS = {
    "EXP": _exp,
    "LOG": _log,
    "LOG1P": _log1p,
    "EXPM1": _expm1,
    "TANH": _tanh,
    "SIGMOID": _sigmoid,
    "ERF": lambda m, x: _erf_f64(m, x) if m.is64 else _erf_f32(m, x),
    "SIN": lambda m, x: _sincos(m, x, "SIN"),
    "COS": lambda m, x: _sincos(m, x, "COS"),
    "TAN": lambda m, x: _sincos(m, x, "TAN"),
}


def _call(m: _B, name: str, x):
    return m.b.call(math_function(m.m, name, m.t), [x])


def math_function(module: ir.Module, name: str, ty) -> ir.Function:
    """The module's ``alwaysinline`` function computing ``name`` (e.g. "EXP") on ``ty``.

    float16 is computed in float32 and rounded (as numpy does).
    """
    suffix = {F32: "f32", F64: "f64", HALF: "f16"}[ty]
    fname = f"gc.{name.lower()}.{suffix}"
    try:
        return module.get_global(fname)
    except KeyError:
        pass
    fn = ir.Function(module, ir.FunctionType(ty, [ty]), fname)
    fn.linkage = "internal"
    fn.attributes.add("alwaysinline")
    fn.attributes.add("nounwind")
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    (x,) = fn.args
    if ty == HALF:
        inner = math_function(module, name, F32)
        y = builder.fptrunc(builder.call(inner, [builder.fpext(x, F32)]), HALF)
    else:
        y = _EMITTERS[name](_B(builder, ty, module), x)
    builder.ret(y)
    return fn
