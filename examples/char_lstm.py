"""Train a character-level LSTM language model, then sample text from it in the graph.

    python examples/char_lstm.py                     # defaults: 400 steps, then a sample
    python examples/char_lstm.py --steps 100 --target reference
    python examples/char_lstm.py --prime "It was" --sample-length 300 --temperature 0.5

The text is the opening of Charles Dickens' *A Tale of Two Cities* (1859, public domain),
shipped as ``examples/data/two_cities.txt``. The model: an embedding, one
``gc.nn.rnn_cell.LSTMCell`` run over the sequence by ``gc.nn.dynamic_rnn`` (one native
loop, gradients through it), a dense softmax layer; Adam on the mean cross-entropy of
the next character.

Sampling is one graph too: ``dynamic_rnn`` reads the prime text, then a ``gc.while_loop``
calls the same cell (same weights) once per new character, drawing each from the
softmax with the Gumbel-max trick and appending it to the text, a loop variable whose
length grows (``shape_invariants``).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

try:
    import graphc as gc
except ImportError:  # run from a source checkout without installing: use the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import graphc as gc

TEXT = Path(__file__).resolve().parent / "data" / "two_cities.txt"


@dataclass
class History:
    """What a run measured: the loss of every step, the sampled text, the seconds taken."""

    step_losses: list = field(default_factory=list)
    sample: str = ""
    train_seconds: float = 0.0


def load_text(path=TEXT):
    """The text, its vocabulary (sorted characters) and the text as int32 ids."""
    text = Path(path).read_text(encoding="utf-8")
    vocab = sorted(set(text))
    index = {ch: i for i, ch in enumerate(vocab)}
    return text, vocab, np.array([index[ch] for ch in text], np.int32)


class Model:
    """The graph: training step on [batch, time] ids, and the in-graph sampler."""

    def __init__(self, vocab_size, args):
        v, e, h = vocab_size, args.embedding, args.hidden
        self.ids = gc.placeholder(gc.int32, (None, None), name="ids")
        self.targets = gc.placeholder(gc.int32, (None, None), name="targets")
        self.embedding = gc.Variable(
            gc.random_uniform((v, e), -0.1, 0.1, seed=args.seed), name="embedding"
        )
        self.cell = gc.nn.rnn_cell.LSTMCell(h)
        outputs, _ = gc.nn.dynamic_rnn(
            self.cell, gc.nn.embedding_lookup(self.embedding, self.ids), dtype=gc.float32
        )
        limit = float(np.sqrt(6.0 / (h + v)))
        self.w = gc.Variable(
            gc.random_uniform((h, v), -limit, limit, seed=args.seed + 1), name="softmax/kernel"
        )
        self.b = gc.Variable(np.zeros(v, np.float32), name="softmax/bias")
        logits = self.logits(gc.reshape(outputs, (-1, h)))
        labels = gc.reshape(self.targets, (-1,))
        self.loss = gc.reduce_mean(
            gc.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        )
        self.train_op = gc.train.AdamOptimizer(args.lr).minimize(self.loss)
        self._build_sampler(args)

    def logits(self, h):
        return gc.matmul(h, self.w) + self.b

    def _build_sampler(self, args):
        """prime ids [1, n] -> the prime followed by ``sample_length`` sampled ids."""
        self.prime = gc.placeholder(gc.int32, (1, None), name="prime")
        self.temperature = gc.placeholder_with_default(
            np.float32(args.temperature), (), name="temperature"
        )
        # the state after all but the last prime character (zero state for a 1-char prime)
        _, state = gc.nn.dynamic_rnn(
            self.cell,
            gc.nn.embedding_lookup(self.embedding, self.prime[:, :-1]),
            dtype=gc.float32,
            scope="sampler",
        )
        n, v = args.sample_length, int(self.w.shape[1])
        uniform = gc.random_uniform((n, v), 1e-7, 1.0, seed=args.seed + 2)
        gumbel = -gc.log(-gc.log(uniform))  # argmax(logits + gumbel) ~ softmax(logits)

        def cond(i, c, h, prev, text):
            return gc.less(i, n)

        def body(i, c, h, prev, text):
            x = gc.nn.embedding_lookup(self.embedding, prev)  # [1, embedding]
            out, new = self.cell(x, gc.nn.rnn_cell.LSTMStateTuple(c, h))
            scores = self.logits(out)[0] / self.temperature + gumbel[i]
            nxt = gc.cast(gc.argmax(scores, axis=0), gc.int32)
            nxt = gc.reshape(nxt, (1,))
            return i + 1, new.c, new.h, nxt, gc.concat([text, nxt], 0)

        loop_vars = (gc.constant(0), state.c, state.h, self.prime[0, -1:], self.prime[0])
        invariants = ((), (1, args.hidden), (1, args.hidden), (1,), (None,))
        self.sampled = gc.while_loop(cond, body, loop_vars, shape_invariants=invariants)[4]


def batches(ids, batch, steps, rng):
    """Random windows of ``steps + 1`` characters: (inputs, next-character targets)."""
    starts = rng.integers(0, len(ids) - steps - 1, batch)
    windows = np.stack([ids[s : s + steps + 1] for s in starts])
    return windows[:, :-1], windows[:, 1:]


def train(args) -> History:
    """Train with the parsed ``args`` and sample; returns the History."""
    text, vocab, ids = load_text(args.text)
    graph = gc.Graph()
    with graph.as_default():
        gc.set_random_seed(args.seed)
        model = Model(len(vocab), args)
        init = gc.global_variables_initializer()
    rng = np.random.default_rng(args.seed)
    hist = History()
    with gc.Session(graph=graph, target=args.target) as sess:
        sess.run(init)
        t0 = time.perf_counter()
        for step in range(1, args.steps + 1):
            x, y = batches(ids, args.batch, args.seq_len, rng)
            loss, _ = sess.run([model.loss, model.train_op], {model.ids: x, model.targets: y})
            hist.step_losses.append(float(loss))
            if step % args.log_every == 0 or step == args.steps:
                recent = np.mean(hist.step_losses[-args.log_every :])
                print(f"step {step}/{args.steps}  loss {recent:.3f}", flush=True)
        hist.train_seconds = time.perf_counter() - t0
        index = {ch: i for i, ch in enumerate(vocab)}
        unknown = sorted(set(args.prime) - set(index))
        if unknown:
            raise SystemExit(f"--prime uses characters not in the text: {unknown}")
        prime = np.array([[index[ch] for ch in args.prime]], np.int32)
        out = sess.run(model.sampled, {model.prime: prime})
    hist.sample = "".join(vocab[i] for i in out)
    return hist


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=400, help="training steps")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=48, help="characters per training window")
    p.add_argument("--hidden", type=int, default=128, help="LSTM units")
    p.add_argument("--embedding", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target", default="cpu", choices=["cpu", "reference", "cuda"])
    p.add_argument("--prime", default="It was ", help="text the sample starts from")
    p.add_argument("--sample-length", type=int, default=200, help="characters to sample")
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--text", default=str(TEXT), help="training text (UTF-8)")
    args = p.parse_args(argv)
    for name in ("steps", "batch", "seq_len", "hidden", "embedding", "sample_length",
                 "log_every"):  # fmt: skip
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.temperature <= 0:
        p.error("--temperature must be positive")
    if not args.prime:
        p.error("--prime must not be empty")
    return args


def main(argv=None) -> History:
    args = parse_args(argv)
    print(f"char LSTM ({args.hidden} units) on {Path(args.text).name}, target={args.target}")
    hist = train(args)
    print(f"trained {args.steps} steps in {hist.train_seconds:.1f} s")
    print("sample:")
    print(hist.sample)
    return hist


if __name__ == "__main__":
    main()
