"""Benchmarks: speed and memory of the product, each measured side by side with a peer in the same run.

Run with ``python -m bench [parse|inventory|prowler|all]`` (``make bench`` runs ``all``). Every step
starts its own emulators, writes ``bench/results/<step>.json`` and ``<step>.md`` and prints a summary
table. Figures are ratios to the peer measured in the same run, never absolute thresholds: see
``docs/benchmarks.md``.
"""
