"""Benchmarks that start their own processes and write JSON to bench/results/."""
