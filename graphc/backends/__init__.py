"""Backends: each turns a Program into an Executable for one target."""
