"""hoptrace graph: correlate asynchronous hops into transactions and a service map (pure, no I/O)."""
