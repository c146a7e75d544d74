"""Indexing jobs: spooled inputs, a journal under data_dir/jobs, a runner (docs/jobs.md)."""
