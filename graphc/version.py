"""The graphc version; part of every compile-cache key and artifact header."""

__version__ = "0.1.0"
