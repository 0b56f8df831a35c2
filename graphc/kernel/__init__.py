"""Kernel IR: the loop-nest IR both backends render (see ir.py)."""
