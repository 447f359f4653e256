"""Developer tools: benchmarks (tools.bench), wire microbenchmarks."""
