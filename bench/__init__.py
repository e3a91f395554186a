"""Benchmarks: our router side by side with Mephisto's Node router and a bare echo floor.

Run ``python -m bench --quick`` (under two minutes) or ``python -m bench`` (the full run).
See docs/BENCHMARKS.md.
"""
