"""Developer benchmarks, not part of the product: they report numbers, the tests check correctness.

Run each as root from the checkout: `.venv/bin/python -m benchmarks.bench_NAME [--help]`.
"""
