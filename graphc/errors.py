"""Exception classes of graphc (``gc.errors``), named as in TensorFlow 1."""


class GraphcError(Exception):
    """Base class of every error graphc raises on purpose."""


class InvalidArgumentError(GraphcError, ValueError):
    """An argument or a fed value is not acceptable (missing feed, NaN in check_numerics...)."""


class FailedPreconditionError(GraphcError):
    """The system is not in a state to run the request (e.g. an uninitialised variable)."""


class UnimplementedError(GraphcError, NotImplementedError):
    """The operation is not implemented for this target or these arguments."""


class UnavailableError(GraphcError):
    """A requested resource (a GPU, pycuda, a library) is not available here."""


class InvalidArtifactError(GraphcError):
    """An exported artifact or checkpoint is corrupt, truncated or of an unknown version."""


class CompileError(GraphcError):
    """The compiler failed on a graph it accepted: a bug, reported with the stage that failed."""


class ResourceExhaustedError(GraphcError, MemoryError):
    """A device ran out of memory (the run changed nothing; free memory or use smaller
    batches)."""


class OutOfRangeError(GraphcError):
    """An iterator reached the end of its dataset (``sess.run`` of ``it.get_next()``)."""


class NotFoundError(GraphcError, KeyError):
    """A named tensor, operation or file does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


__all__ = [
    "GraphcError",
    "InvalidArgumentError",
    "FailedPreconditionError",
    "UnimplementedError",
    "UnavailableError",
    "InvalidArtifactError",
    "CompileError",
    "NotFoundError",
    "OutOfRangeError",
    "ResourceExhaustedError",
]
