"""Observability: Prometheus counters (metrics.py) and the structured decision log (decisions.py).

Plain data and plain functions; the KSR calls are in kemi/routing/observe.py.
"""
