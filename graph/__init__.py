"""hoptrace.graph: hop correlation, transactions and the service map; pure (no I/O, SQL or HTTP).

- ``spans``: the span as the graph reads it (``GraphSpan``);
- ``naming``: map nodes and edges of a span, from semantic conventions;
- ``hops``: hop keys of a span, pairing, ``Hop``;
- ``transactions``: membership along hops, per-trace facts, ``Transaction`` summaries;
- ``sketch`` and ``rollup``: per-minute metrics with mergeable latency sketches;
- ``correlator``: all of it in memory, incrementally, as the stores do it in SQL;
- ``servicemap``: the networkx map model and its JSON (DESIGN §7).
"""
