"""Benchmarks of utcp against the Linux kernel, in namespaces this tool creates (issue 6)."""
