"""sqlcommenter comments on the SQL a request runs (``TRACING_SQL_COMMENTER``).

Each statement gets ``/*controller='...',db_driver='...',framework='django%3A5.2',route='...',
traceparent='00-...-...-01'*/`` appended (before a trailing ``;``), as the sqlcommenter spec and
opentelemetry-instrumentation-django's ``SqlCommenter`` middleware write it: keys sorted, values URL-quoted
then single-quoted. ``pg_stat_activity``, ``pg_stat_statements`` and Cloud SQL Query Insights then tie a
statement to its route and trace. ``traceparent`` (and ``tracestate``) only when the current span records.

``%`` is doubled only when the statement has parameters (the driver turns ``%%`` back into ``%``); the
contrib doubles it always, which leaves ``%%`` in statements run without parameters.

A statement that already ends with a comment, or runs on a connection where the contrib's commenter is
active, is left alone: the comment is never added twice.
"""

from __future__ import annotations

import contextvars
from typing import Any
from urllib.parse import quote

from ..runtime import Runtime

__all__ = ["SqlCommentIntegration", "SqlCommentWrapper", "SqlComments", "comment", "integration"]

_current: contextvars.ContextVar[tuple[SqlComments, Any] | None] = contextvars.ContextVar(
    "django_observe_sql_comments", default=None
)
_CONTRIB_WRAPPER = ("opentelemetry.instrumentation.django.middleware.sqlcommenter_middleware", "_QueryWrapper")


def _quote(value: str, params: bool) -> str:
    quoted = quote(value)  # "/" stays, as in the contrib
    return quoted.replace("%", "%%") if params else quoted


def comment(sql: str, tags: dict[str, str | None], *, params: bool) -> str:
    """``sql`` with the sqlcommenter comment of ``tags`` (None values left out).

    Args:
        params: the statement is run with parameters, so ``%`` must be doubled.
    """
    body = ",".join(
        f"{_quote(key, params)}='{_quote(value, params)}'" for key, value in sorted(tags.items()) if value is not None
    )
    if not body:
        return sql
    sql = sql.rstrip()
    if sql.endswith(";"):
        return f"{sql[:-1].rstrip()} /*{body}*/;"
    return f"{sql} /*{body}*/"


class SqlComments:
    """Binds the request being served, so the execute wrapper can describe it.

    Args:
        tracing: tracing is on (``traceparent`` is added when the current span records).
    """

    __slots__ = ("framework", "tracing")

    def __init__(self, tracing: bool):
        import django

        self.framework = f"django:{django.get_version()}"
        self.tracing = tracing

    def begin(self, request: Any) -> contextvars.Token[tuple[SqlComments, Any] | None]:
        return _current.set((self, request))

    @staticmethod
    def end(token: contextvars.Token[tuple[SqlComments, Any] | None]) -> None:
        try:
            _current.reset(token)
        except ValueError:  # ended in another context: just clear it
            _current.set(None)

    def tags(self, request: Any, connection: Any) -> dict[str, str | None]:
        match = getattr(request, "resolver_match", None)
        tags: dict[str, str | None] = {
            "framework": self.framework,
            "db_driver": connection.settings_dict.get("ENGINE") or None,
            "controller": match.view_name if match is not None else None,
            "route": (match.route or None) if match is not None else None,
            "app_name": (match.app_name or None) if match is not None else None,
        }
        if self.tracing:
            from opentelemetry import trace

            span = trace.get_current_span()
            if span.is_recording():
                ctx = span.get_span_context()
                tags["traceparent"] = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
                tags["tracestate"] = ctx.trace_state.to_header() or None
        return tags


def _already_commented(sql: str, connection: Any) -> bool:
    if sql.rstrip().rstrip(";").endswith("*/"):
        return True
    return any((type(w).__module__, type(w).__name__) == _CONTRIB_WRAPPER for w in connection.execute_wrappers)


class SqlCommentWrapper:
    """The execute wrapper (one per connection): comments statements run while a request is bound."""

    __slots__ = ()

    def __call__(self, execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        bound = _current.get()
        if bound is not None and isinstance(sql, str):
            comments, request = bound
            connection = context["connection"]
            if not _already_commented(sql, connection):
                sql = comment(sql, comments.tags(request, connection), params=params is not None)
        return execute(sql, params, many, context)


def _wrap(connection: Any) -> None:
    # Last in the list runs innermost: the statement counter (integrations/db.py) keeps seeing the bare statement.
    if not any(isinstance(w, SqlCommentWrapper) for w in connection.execute_wrappers):
        connection.execute_wrappers.append(SqlCommentWrapper())


_UID = "django_observe.sqlcomment"


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    _wrap(connection)


class SqlCommentIntegration:
    """The ``sqlcomment`` row: comments the SQL of requests (``TRACING_SQL_COMMENTER``)."""

    name = "sqlcomment"

    def available(self, runtime: Runtime) -> bool:
        """Django's database layer: every project has it."""
        return True

    def install(self, runtime: Runtime) -> None:
        """Wrap every database connection, open or opened later (once; safe to call again), when the runtime
        comments SQL."""
        if runtime.sql_comments is None:
            return
        from django.db import connections
        from django.db.backends.signals import connection_created

        connection_created.connect(_on_connection_created, weak=False, dispatch_uid=_UID)
        for connection in connections.all(initialized_only=True):
            _wrap(connection)

    def uninstall(self) -> None:
        """Disconnect the receiver and take the wrapper off the connections open in this thread."""
        from django.db import connections
        from django.db.backends.signals import connection_created

        connection_created.disconnect(dispatch_uid=_UID)
        for connection in connections.all(initialized_only=True):
            wrappers = connection.execute_wrappers
            wrappers[:] = [w for w in wrappers if not isinstance(w, SqlCommentWrapper)]


integration = SqlCommentIntegration()
