"""Hand-run speed benchmarks: inkwell's paths against straightforward reference loops (see README.md)."""
