"""A local stack of real processes for the demo, tests and benchmarks (stack.py), and `erpsync demo` (demo.py)."""
