"""Benchmarks: each module has ``add_arguments(parser)`` and ``main(args) -> int``, prints a
table, and writes JSON (with the machine it ran on) to ``bench/results/``."""
