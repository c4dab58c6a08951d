"""Prometheus alerting for django_observe: SLO arithmetic, rule groups and promtool tests (build-time tooling).

:mod:`~django_observe.alerting.slo` is pure and imported at startup (``SLOS`` parsing);
:mod:`~django_observe.alerting.rules` and :mod:`~django_observe.alerting.promtool` build plain dicts;
:mod:`~django_observe.alerting.output` writes them as YAML, which needs the ``alerting`` extra (PyYAML).
"""
