"""Optimisation passes: each a function Program -> Program; the pipeline is in manager.py."""
