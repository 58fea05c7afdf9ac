"""Deduplication: exact and MinHash LSH, as map -> shuffle through storage -> reduce steps."""
