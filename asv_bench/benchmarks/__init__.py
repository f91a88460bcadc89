"""asv benchmarks for nkeras (see docs/benchmarks.md)."""
