"""`make bench`: each bench/bench_*.py measures one thing against a baseline in the same run."""
