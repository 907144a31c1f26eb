"""fastfeat's benchmarks: an asv suite (``bench_*.py``), the peer comparison (``compare.py``) and the
scaling figures (``scaling.py``). See ``benchmarks/README.md``."""
