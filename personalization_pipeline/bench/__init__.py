"""``personalization-pipeline bench``: generated tiers through the nightly and weekly jobs, each
step measured, next to the bare kernels doing the same work, written to ``BENCHMARKS.md``."""
