"""Metrics collected at scrape time, one module per thing collected.

:mod:`.base` holds what they share: the deadline, the error accounting (``metrics_collector_errors_total``) and
the short result cache. The package imports none of its modules, so that importing one collector (or the
package) never imports prometheus_client before the multiprocess mode is chosen.

In multiprocess mode the collectors run only in the process that serves the scrape, so each reads something that
does not depend on which process that is:

- PostgreSQL server-side connections and ``max_connections`` are global to the server;
- psycopg pool numbers live in each process: every process writes its own into ``livesum`` gauges
  (:class:`~.database.PoolRecorder`, at the end of requests and tasks, at most once a second), summed over live
  processes;
- process CPU and memory are read from ``/proc/<pid>`` for every live process of the group
  (:class:`~.process.ProcessesCollector`);
- active users are appended to small files per process and minute (:class:`~.active_users.ActiveUsers`).
"""
