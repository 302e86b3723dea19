"""Observability: Prometheus counters and the structured decision log.

metrics.py     the counters and their label values (declared once, rendered into the cfg)
decisions.py   the decision log's line format (logfmt), its levels and events
part.py        the KSR part (Observer / MeteredObserver): the note_* calls at decision points, /metrics
settings.py    [metrics] and [logging]
"""
