"""Expression emission for the LLVM renderer: Kernel IR expressions to LLVM values, dtype
casts (float16 through round-to-odd float32), and ``Math`` functions on bools, integers and
floats (vector polynomials from ``math.py`` for the transcendentals)."""

from __future__ import annotations

from llvmlite import ir

from ... import dtypes as _dt
from ...errors import UnimplementedError
from ...expr import Call, Cast, Const, Dim, Load, Math, Var, expr_dtype
from . import math as _m
from .function import _SSA, _Fn
from .irutil import I1, I8, I32, const, value_type


class ExprEmitter:
    """The expression half of ``Renderer``: Kernel IR expressions to LLVM values (memoised
    per statement), dtype casts, and the scalar functions of ``Math`` on bools, integers and
    floats (transcendentals from ``math.py``)."""

    def _index(self, f: _Fn, e):
        v = self._expr(f, e)
        dt = expr_dtype(e)
        if dt != _dt.int64:
            v = self._cast(f, v, dt, _dt.int64)
        return v

    def _expr(self, f: _Fn, e, flags=()):
        key = (id(e), flags)
        hit = f.memo.get(key)
        if hit is not None:
            return hit[0]
        v = self._expr_uncached(f, e, flags)
        f.memo[key] = (v, e)  # keep e alive so its id stays unique
        return v

    def _expr_uncached(self, f: _Fn, e, flags):
        b = f.b
        if isinstance(e, Const):
            return const(e.value, e.dtype)
        if isinstance(e, Var):
            slot = f.scope.get(e.name)
            if slot is None:
                raise ValueError(f"variable {e.name!r} used before definition")
            if isinstance(slot[0], _SSA):
                return slot[0].v
            return b.load(slot[0], typ=value_type(slot[1]))
        if isinstance(e, Dim):
            return f.dim(e.name)
        if isinstance(e, Load):
            ptr, ety = f.buf_ptr(e.buffer, self._index(f, e.index))
            bdt = self.kp.buffers[e.buffer].dtype
            v = b.load(ptr, typ=ety, align=bdt.itemsize)
            if bdt == _dt.bool_:
                v = b.icmp_unsigned("!=", v, ir.Constant(I8, 0))
            return self._cast(f, v, bdt, e.dtype)
        if isinstance(e, Cast):
            return self._cast(f, self._expr(f, e.x, flags), expr_dtype(e.x), e.dtype)
        if isinstance(e, Call):
            dts = [expr_dtype(a) for a in e.args]
            args = [self._expr(f, a, flags if e.fn in (Math.ADD, Math.MUL) else ()) for a in e.args]
            return self._call(f, e.fn, args, dts, flags)
        raise TypeError(f"not a Kernel IR expression: {e!r}")

    def _cast(self, f: _Fn, v, src, dst):
        b = f.b
        if src == dst:
            return v
        st, dty = value_type(src), value_type(dst)
        if dst == _dt.bool_:
            if src.is_floating:
                return b.fcmp_unordered("!=", v, ir.Constant(st, 0.0))
            return b.icmp_signed("!=", v, ir.Constant(st, 0))
        if src == _dt.bool_:
            return b.uitofp(v, dty) if dst.is_floating else b.zext(v, dty)
        if dst == _dt.float16 and src != _dt.float32:
            return _to_half(b, v, src)
        if src == _dt.float16 and not dst.is_floating:
            v, st, src = b.fpext(v, ir.FloatType()), ir.FloatType(), _dt.float32
        if src.is_floating and dst.is_floating:
            return b.fpext(v, dty) if src.itemsize < dst.itemsize else b.fptrunc(v, dty)
        if src.is_floating:
            return b.call(_m.intrinsic(self.module, "llvm.fptosi.sat", st, 1, ret=dty), [v])
        if dst.is_floating:
            return b.sitofp(v, dty)
        if src.itemsize < dst.itemsize:
            return b.sext(v, dty)
        return b.trunc(v, dty)

    def _call(self, f: _Fn, fn: Math, args, dts, flags):
        b = f.b
        dt = dts[-1] if fn is Math.SELECT else dts[0]
        if fn is Math.SELECT:
            cond = args[0]
            return b.select(cond, args[1], args[2])
        if dt == _dt.bool_:
            return self._bool_call(b, fn, args)
        if dt.is_floating:
            fl = ("fast",) if self.fast_math else tuple(flags)
            return self._float_call(f, fn, args, dt, fl)
        return self._int_call(f, fn, args, dt)

    def _bool_call(self, b, fn, args):
        x = args[0]
        y = args[1] if len(args) > 1 else None
        table = {
            Math.AND: lambda: b.and_(x, y),
            Math.MUL: lambda: b.and_(x, y),
            Math.MIN: lambda: b.and_(x, y),
            Math.OR: lambda: b.or_(x, y),
            Math.ADD: lambda: b.or_(x, y),
            Math.MAX: lambda: b.or_(x, y),
            Math.XOR: lambda: b.xor(x, y),
            Math.NE: lambda: b.xor(x, y),
            Math.SUB: lambda: b.xor(x, y),
            Math.NOT: lambda: b.not_(x),
            Math.EQ: lambda: b.not_(b.xor(x, y)),
            Math.LT: lambda: b.icmp_unsigned("<", x, y),
            Math.LE: lambda: b.icmp_unsigned("<=", x, y),
            Math.GT: lambda: b.icmp_unsigned(">", x, y),
            Math.GE: lambda: b.icmp_unsigned(">=", x, y),
            Math.ABS: lambda: x,
            Math.SIGN: lambda: x,
            Math.FLOOR: lambda: x,
            Math.CEIL: lambda: x,
            Math.ROUND: lambda: x,
            Math.ISNAN: lambda: ir.Constant(I1, 0),
            Math.ISFINITE: lambda: ir.Constant(I1, 1),
        }
        if fn not in table:
            raise UnimplementedError(f"cpu backend: Math.{fn.name} on bool")
        return table[fn]()

    def _float_call(self, f: _Fn, fn: Math, args, dt, flags):
        b = f.b
        ty = value_type(dt)
        x = args[0]
        y = args[1] if len(args) > 1 else None

        def c(v):
            return ir.Constant(ty, v)

        def intr(name, *a):
            return b.call(_m.intrinsic(self.module, name, ty, len(a)), list(a))

        if fn is Math.ADD:
            return b.fadd(x, y, flags=flags)
        if fn is Math.SUB:
            return b.fsub(x, y, flags=flags)
        if fn is Math.MUL:
            return b.fmul(x, y, flags=flags)
        if fn is Math.DIV:
            return b.fdiv(x, y, flags=flags)
        if fn in (Math.MAX, Math.MIN):
            # numpy maximum/minimum propagate NaN from either side. In a reduction, the
            # IEEE-754-2019 intrinsics (same NaN rule) let LLVM vectorise the loop.
            # ``nsz``: which of -0.0 and +0.0 wins is left open (numpy's reductions leave it
            # open too); without it the x86 lowering orders the operands by sign first, three
            # more instructions per vector (W2 softmax on one thread 1.64 -> 1.41 ms)
            if "reassoc" in flags:
                name = "llvm.maximum" if fn is Math.MAX else "llvm.minimum"
                return b.call(_m.intrinsic(self.module, name, ty, 2), [x, y], fastmath=("nsz",))
            pick = b.fcmp_ordered(">" if fn is Math.MAX else "<", x, y)
            r = b.select(pick, x, y)
            return b.select(b.fcmp_unordered("uno", x, x), x, r)
        cmp = {Math.EQ: "==", Math.LT: "<", Math.LE: "<=", Math.GT: ">", Math.GE: ">="}
        if fn in cmp:
            return b.fcmp_ordered(cmp[fn], x, y)
        if fn is Math.NE:
            return b.fcmp_unordered("!=", x, y)
        if fn is Math.NEG:
            return b.fneg(x)
        if fn is Math.ABS:
            return intr("llvm.fabs", x)
        if fn is Math.SIGN:
            r = b.select(b.fcmp_ordered(">", x, c(0.0)), c(1.0), x)
            r = b.select(b.fcmp_ordered("<", x, c(0.0)), c(-1.0), r)
            return b.select(b.fcmp_ordered("==", x, c(0.0)), c(0.0), r)
        if fn is Math.SQRT:
            return intr("llvm.sqrt", x)
        if fn is Math.RSQRT:
            return b.fdiv(c(1.0), intr("llvm.sqrt", x), flags=flags)
        if fn is Math.RECIP:
            return b.fdiv(c(1.0), x, flags=flags)
        if fn is Math.FLOOR:
            return intr("llvm.floor", x)
        if fn is Math.CEIL:
            return intr("llvm.ceil", x)
        if fn is Math.ROUND:
            return intr("llvm.roundeven", x)
        if fn is Math.ISNAN:
            return b.fcmp_unordered("uno", x, x)
        if fn is Math.ISFINITE:
            return b.fcmp_ordered("<", intr("llvm.fabs", x), c(float("inf")))
        if fn is Math.POW:
            root = self._root_pow(b, x, y, ty, intr)
            if root is not None:
                return root
            if dt == _dt.float16:
                f32 = ir.FloatType()
                p = b.call(
                    _m.intrinsic(self.module, "llvm.pow", f32, 2),
                    [b.fpext(x, f32), b.fpext(y, f32)],
                )
                return b.fptrunc(p, ty)
            return intr("llvm.pow", x, y)
        if fn in (Math.MOD, Math.FLOORDIV):
            return self._float_divmod(b, fn, x, y, ty)
        if fn.name in _m.TRANSCENDENTAL:
            return b.call(_m.math_function(self.module, fn.name, ty), [x])
        raise UnimplementedError(f"cpu backend: Math.{fn.name} on {dt.name}")

    @staticmethod
    def _root_pow(b, x, y, ty, intr):
        """``x ** 0.5`` and ``x ** 0.75`` (an LRN's beta) as square roots, which vectorise,
        instead of a scalar ``powf`` call per element (None: another exponent or type).
        x ** 0.5 is sqrt(x), as numpy (the reference) computes it: -0 for -0, NaN for -inf.
        x ** 0.75 = sqrt(x) * sqrt(sqrt(x)), within 2 ulp; as numpy's pow: +inf for -inf
        (selected), +0 for -0 (the product of two -0), NaN for x < 0."""
        if not isinstance(y, ir.Constant) or not isinstance(ty, (ir.FloatType, ir.DoubleType)):
            return None
        e = float(y.constant)
        if e not in (0.5, 0.75):
            return None
        s = intr("llvm.sqrt", x)
        if e == 0.5:
            return s
        r = b.fmul(s, intr("llvm.sqrt", s))
        ninf = b.fcmp_ordered("==", x, ir.Constant(ty, float("-inf")))
        return b.select(ninf, ir.Constant(ty, float("inf")), r)

    def _float_divmod(self, b, fn, a, d, ty):
        """numpy's npy_divmod: fmod-based, sign of the divisor, exact floor division."""

        def c(v):
            return ir.Constant(ty, v)

        def intr(name, *x):
            return b.call(_m.intrinsic(self.module, name, ty, len(x)), list(x))

        mod = b.frem(a, d)
        fix = b.and_(
            b.fcmp_ordered("!=", mod, c(0.0)),
            b.xor(b.fcmp_ordered("<", d, c(0.0)), b.fcmp_ordered("<", mod, c(0.0))),
        )
        if fn is Math.MOD:
            r = b.select(fix, b.fadd(mod, d), mod)
            r = b.select(b.fcmp_ordered("==", mod, c(0.0)), intr("llvm.copysign", c(0.0), d), r)
            return r
        div = b.fdiv(b.fsub(a, mod), d)
        div = b.select(fix, b.fsub(div, c(1.0)), div)
        fl = intr("llvm.floor", div)
        fl = b.select(b.fcmp_ordered(">", b.fsub(div, fl), c(0.5)), b.fadd(fl, c(1.0)), fl)
        q = b.fdiv(a, d)
        r = b.select(b.fcmp_ordered("!=", div, c(0.0)), fl, intr("llvm.copysign", c(0.0), q))
        return b.select(b.fcmp_ordered("==", d, c(0.0)), q, r)

    def _int_call(self, f: _Fn, fn: Math, args, dt):
        b = f.b
        ty = value_type(dt)
        x = args[0]
        y = args[1] if len(args) > 1 else None
        zero, one = ir.Constant(ty, 0), ir.Constant(ty, 1)
        if fn is Math.ADD:
            return b.add(x, y)
        if fn is Math.SUB:
            return b.sub(x, y)
        if fn is Math.MUL:
            return b.mul(x, y)
        if fn in (Math.DIV, Math.FLOORDIV, Math.MOD):
            # reference: a divisor of 0 acts as 1; avoid the INT_MIN / -1 trap too
            d = b.select(b.icmp_signed("==", y, zero), one, y)
            m1 = b.icmp_signed("==", d, ir.Constant(ty, -1))
            ds = b.select(m1, one, d)
            q = b.sdiv(x, ds)
            r = b.srem(x, ds)
            q = b.select(m1, b.neg(x), q)
            r = b.select(m1, zero, r)
            adj = b.and_(
                b.icmp_signed("!=", r, zero),
                b.xor(b.icmp_signed("<", r, zero), b.icmp_signed("<", d, zero)),
            )
            if fn is Math.MOD:
                return b.select(adj, b.add(r, d), r)
            return b.select(adj, b.sub(q, one), q)
        if fn is Math.MAX:
            return b.select(b.icmp_signed(">", x, y), x, y)
        if fn is Math.MIN:
            return b.select(b.icmp_signed("<", x, y), x, y)
        cmp = {
            Math.EQ: "==",
            Math.NE: "!=",
            Math.LT: "<",
            Math.LE: "<=",
            Math.GT: ">",
            Math.GE: ">=",
        }
        if fn in cmp:
            return b.icmp_signed(cmp[fn], x, y)
        if fn is Math.NEG:
            return b.neg(x)
        if fn is Math.ABS:
            return b.select(b.icmp_signed("<", x, zero), b.neg(x), x)
        if fn is Math.SIGN:
            r = b.select(b.icmp_signed(">", x, zero), one, zero)
            return b.select(b.icmp_signed("<", x, zero), ir.Constant(ty, -1), r)
        if fn in (Math.FLOOR, Math.CEIL, Math.ROUND):
            return x
        if fn is Math.ISNAN:
            return ir.Constant(I1, 0)
        if fn is Math.ISFINITE:
            return ir.Constant(I1, 1)
        if fn in (Math.AND, Math.OR, Math.XOR):
            op = {Math.AND: b.and_, Math.OR: b.or_, Math.XOR: b.xor}[fn]
            return op(b.icmp_signed("!=", x, zero), b.icmp_signed("!=", y, zero))
        if fn is Math.NOT:
            return b.icmp_signed("==", x, zero)
        if fn is Math.POW:
            return b.call(self._ipow(ty), [x, y])
        if fn is Math.BITXOR:
            return b.xor(x, y)
        if fn is Math.SHR:
            # logical shift; shift counts outside [0, width) would be poison: mask them
            return b.lshr(x, b.and_(y, ir.Constant(ty, ty.width - 1)))
        if fn is Math.BITAND:
            return b.and_(x, y)
        if fn is Math.BITOR:
            return b.or_(x, y)
        if fn is Math.BITNOT:
            return b.not_(x)
        if fn in (Math.SHL, Math.SAR, Math.LSHR):
            # a count >= the width (unsigned: negative counts too) is poison in LLVM: the
            # shift takes the count masked, a select gives numpy's value for those counts
            top = ir.Constant(ty, ty.width - 1)
            big = b.icmp_unsigned(">", y, top)
            if fn is Math.SAR:
                return b.ashr(x, b.select(big, top, y))
            shift = b.shl if fn is Math.SHL else b.lshr
            return b.select(big, zero, shift(x, b.and_(y, top)))
        raise UnimplementedError(f"cpu backend: Math.{fn.name} on {dt.name}")

    def _ipow(self, ty):
        """Integer power by squaring; a negative exponent counts as 0 (the reference's rule)."""
        name = f"gc.ipow.i{ty.width}"
        fn = self._decls.get(name)
        if fn is not None:
            return fn
        fn = ir.Function(self.module, ir.FunctionType(ty, [ty, ty]), name)
        fn.linkage = "internal"
        self._decls[name] = fn
        base, exp = fn.args
        entry = fn.append_basic_block("entry")
        loop = fn.append_basic_block("loop")
        done = fn.append_basic_block("done")
        b = ir.IRBuilder(entry)
        b.branch(loop)
        b.position_at_end(loop)
        r = b.phi(ty)
        x = b.phi(ty)
        e = b.phi(ty)
        r.add_incoming(ir.Constant(ty, 1), entry)
        x.add_incoming(base, entry)
        e.add_incoming(exp, entry)
        odd = b.icmp_signed("!=", b.and_(e, ir.Constant(ty, 1)), ir.Constant(ty, 0))
        pos = b.icmp_signed(">", e, ir.Constant(ty, 0))
        r2 = b.select(b.and_(odd, pos), b.mul(r, x), r)
        x2 = b.mul(x, x)
        e2 = b.ashr(e, ir.Constant(ty, 1))
        r.add_incoming(r2, loop)
        x.add_incoming(x2, loop)
        e.add_incoming(e2, loop)
        b.cbranch(b.icmp_signed(">", e2, ir.Constant(ty, 0)), loop, done)
        b.position_at_end(done)
        b.ret(r2)
        return fn


def _to_half(b, v, src):
    """``v`` (float64 or an integer) rounded once to float16, as numpy does. x86 converts
    only float32 to half in hardware; LLVM lowers a direct double or integer conversion to a
    runtime-library call (``__truncdfhf2``) that a JIT-loaded program cannot resolve (the
    process crashed). Going through float32 rounds twice, which can miss the nearest half on a
    tie, so the float32 step rounds to odd: truncate toward zero and set the last bit when
    inexact, then one correctly rounded float32 -> half conversion (round-to-odd makes the
    two-step rounding exact when the intermediate has 2 or more extra bits, and float32 has 13).
    Integers go through float64 first, exact below 2**53, far beyond half's range."""
    f64, f32 = ir.DoubleType(), ir.FloatType()
    if src != _dt.float64:
        v = b.sitofp(v, f64)
    r = b.fptrunc(v, f32)
    back = b.fpext(r, f64)
    exact = b.fcmp_unordered("==", back, v)  # true for NaN too (unordered): keep r
    away = b.fcmp_ordered(">", _fabs(b, back), _fabs(b, v))
    bits = b.bitcast(r, I32)
    bits = b.select(away, b.sub(bits, ir.Constant(I32, 1)), bits)
    bits = b.or_(bits, ir.Constant(I32, 1))
    odd = b.bitcast(bits, f32)
    r = b.select(exact, r, odd)
    return b.fptrunc(r, ir.HalfType())


def _fabs(b, x):
    fn = b.module.declare_intrinsic("llvm.fabs", [x.type])
    return b.call(fn, [x])
