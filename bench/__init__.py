"""`make bench`: the Python routing (kamailio.cfg + kemi) against bench/native.cfg. See docs/benchmark.md."""
