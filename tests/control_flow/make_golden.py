"""Writes golden_jax.npz: gradients of the cases of test_jax_golden.py computed by JAX
(lax.fori_loop with static bounds, lax.scan and lax.cond under jax.grad, float64;
JAX cannot reverse-differentiate lax.while_loop itself), the oracle this project's
gradients are compared with.

Run with a Python that has jax installed (never graphc's own environment):
    python tests/control_flow/make_golden.py
Inputs are fixed (a seeded generator) and stored beside the results.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

jax.config.update("jax_enable_x64", True)

rng = np.random.default_rng(15)
out: dict = {}

# 1. while_loop: y <- sin(y) * w + 0.1 * y * y, n times; loss = sum(y ** 2)
x = rng.uniform(-1, 1, (2, 3))
w = np.float64(0.8)
n = 4


def while_loss(x, w):
    # JAX cannot reverse-differentiate lax.while_loop (its trip count is dynamic):
    # fori_loop with static bounds is the same loop, differentiable (a scan inside)
    y = lax.fori_loop(0, n, lambda i, y: jnp.sin(y) * w + 0.1 * y * y, x)
    return jnp.sum(y**2)


gx, gw = jax.grad(while_loss, argnums=(0, 1))(x, w)
out.update(while_x=x, while_w=w, while_n=n, while_loss=while_loss(x, w), while_gx=gx,
           while_gw=gw)  # fmt: skip

# 2. scan: a <- tanh(a * v + e); loss = sum(stacked a ** 3) + sum(final a)
elems = rng.uniform(-1, 1, (5, 3))
v = rng.uniform(0.5, 1.5, (3,))
a0 = rng.uniform(-0.5, 0.5, (3,))
for reverse in (False, True):

    def scan_loss(elems, v, a0, reverse=reverse):
        def f(a, e):
            a = jnp.tanh(a * v + e)
            return a, a

        last, ys = lax.scan(f, a0, elems, reverse=reverse)
        return jnp.sum(ys**3) + jnp.sum(last)

    g = jax.grad(scan_loss, argnums=(0, 1, 2))(elems, v, a0)
    key = "scanrev" if reverse else "scan"
    out.update({f"{key}_loss": scan_loss(elems, v, a0), f"{key}_ge": g[0], f"{key}_gv": g[1],
                f"{key}_ga0": g[2]})  # fmt: skip
out.update(scan_elems=elems, scan_v=v, scan_a0=a0)

# 3. cond: sin(x) * w if sum(x) > 0 else x * x * w; loss = sum(out ** 2)
for name, cx in (("pos", np.abs(x)), ("neg", -np.abs(x))):

    def cond_loss(x, w):
        y = lax.cond(jnp.sum(x) > 0, lambda: jnp.sin(x) * w, lambda: x * x * w)
        return jnp.sum(y**2)

    g = jax.grad(cond_loss, argnums=(0, 1))(cx, w)
    out.update({f"cond_{name}_x": cx, f"cond_{name}_gx": g[0], f"cond_{name}_gw": g[1]})

# 4. Hessian of a scalar through a 3-step scan: a <- sin(a * e) + e, loss = a_last ** 2
hx = rng.uniform(-1, 1, (3,))


def hess_loss(e):
    last, _ = lax.scan(lambda a, e: (jnp.sin(a * e) + e, None), jnp.float64(0.5), e)
    return last**2


out.update(hess_x=hx, hess_h=jax.hessian(hess_loss)(hx))

np.savez(Path(__file__).with_name("golden_jax.npz"),
         **{k: np.asarray(v, np.float64) for k, v in out.items()})  # fmt: skip
print("wrote", len(out), "arrays")
