"""The PyTorch peers: eager mode (``TORCH``) and ``torch.compile`` for the element-wise
workloads (``TORCH_COMPILE``). PyTorch is imported inside the builders: it is optional."""

from __future__ import annotations

from ..workloads import CNN_PARAMS, LN_EPS, LR, MLP_PARAMS
from .base import Peer


def _torch_sync(torch, device):
    if device == "cuda":
        torch.cuda.synchronize()


def _torch_device(device):
    return "cuda" if device == "cuda" else "cpu"


def _torch_fn(make, compiled=False):
    def builder(workload, sizes, inputs, device):
        import torch

        dev = _torch_device(device)
        fn, names = make(torch)
        if compiled:
            fn = torch.compile(fn)
        args = [torch.from_numpy(inputs[n]).to(dev) for n in names]

        def run():
            with torch.no_grad():
                out = fn(*args)
            _torch_sync(torch, dev)
            return list(out) if isinstance(out, tuple | list) else [out]

        return run

    return builder


def _torch_chain(torch):
    def chain(x):
        a = x * 1.702
        y = x * (1 / (1 + torch.exp(-a)))
        return torch.tanh(y * 0.5 + 0.1) * y + x

    return chain, ["x"]


def _torch_ln(workload, sizes, inputs, device):
    import torch

    dev = _torch_device(device)
    x, g, b, dy = (torch.from_numpy(inputs[k]).to(dev) for k in ("x", "gamma", "beta", "dy"))
    x.requires_grad_(True)
    g.requires_grad_(True)
    b.requires_grad_(True)

    def run():
        y = torch.nn.functional.layer_norm(x, (x.shape[-1],), g, b, LN_EPS)
        grads = torch.autograd.grad(y, [x, g, b], dy)
        _torch_sync(torch, dev)
        return [y, *grads]

    return run


def _torch_mlp(workload, sizes, inputs, device):
    import torch

    dev = _torch_device(device)
    params = [torch.tensor(inputs[n], device=dev, requires_grad=True) for n in MLP_PARAMS]
    batches = sizes.get("batches", (sizes.get("batch"),))
    data = [
        (torch.from_numpy(inputs["x"][:b]).to(dev), torch.from_numpy(inputs["labels"][:b]).to(dev))
        for b in batches
    ]

    def run():
        losses = []
        for x, y in data:
            w1, b1, w2, b2, w3, b3 = params
            h = torch.relu(x @ w1 + b1)
            h = torch.relu(h @ w2 + b2)
            loss = torch.nn.functional.cross_entropy(h @ w3 + b3, y)
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, gr in zip(params, grads):
                    p.sub_(LR * gr)
            losses.append(loss)
        _torch_sync(torch, dev)
        return [*losses, *params]

    return run


def _torch_cnn(workload, sizes, inputs, device):
    import torch

    dev = _torch_device(device)
    params = [torch.tensor(inputs[k], device=dev, requires_grad=True) for k in CNN_PARAMS]
    x = torch.from_numpy(inputs["x"]).to(dev).permute(0, 3, 1, 2).contiguous()  # NCHW
    y = torch.from_numpy(inputs["labels"]).to(dev)
    F = torch.nn.functional

    def run():
        k1, c1, k2, c2, wd, bd = params
        # graphc's filters are HWIO, torch's OIHW; flatten in NHWC order like graphc.
        h = F.max_pool2d(F.relu(F.conv2d(x, k1.permute(3, 2, 0, 1), c1, padding=1)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, k2.permute(3, 2, 0, 1), c2, padding=1)), 2)
        logits = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1) @ wd + bd
        loss = F.cross_entropy(logits, y)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, gr in zip(params, grads):
                p.sub_(LR * gr)
        _torch_sync(torch, dev)
        return [loss, *params]

    return run


TORCH = Peer(
    "torch eager",
    "torch",
    {
        "W1": _torch_fn(_torch_chain),
        "W2": _torch_fn(lambda torch: (lambda x: torch.softmax(x, dim=-1), ["x"])),
        "W3": _torch_mlp,
        "W4": _torch_fn(lambda torch: (lambda x: x * 2 + 1, ["x"])),
        "W6": _torch_ln,
        "W7": _torch_cnn,
        "W8": _torch_mlp,
    },
)

TORCH_COMPILE = Peer(
    "torch.compile",
    "torch",
    {
        "W1": _torch_fn(_torch_chain, compiled=True),
        "W2": _torch_fn(lambda torch: (lambda x: torch.softmax(x, dim=-1), ["x"]), compiled=True),
        "W4": _torch_fn(lambda torch: (lambda x: x * 2 + 1, ["x"]), compiled=True),
    },
)
