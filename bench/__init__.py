"""hoptrace benchmarks: ``python -m bench [GROUP ...]``.

Rules every group follows (DESIGN §8): each figure is printed beside a baseline measured in the
same run, as a ratio or a difference, never as an absolute verdict on a noisy machine; every load
is bounded in count and in time; servers listen on 127.0.0.1 only; nothing here runs inside the
test suite. Results go to stdout as markdown tables and to ``bench/out/GROUP.json``.
"""
