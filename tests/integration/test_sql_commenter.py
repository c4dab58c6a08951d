"""TRACING_SQL_COMMENTER on real PostgreSQL: the statement text the server saw carries the request's
traceparent and route (read from pg_stat_activity while the statement runs)."""

import threading

import psycopg
import pytest
import requests

from tests import support, support_otlp

pytestmark = pytest.mark.integration

SERVER = 2


def running_statements(dbname):
    with psycopg.connect(support.postgres_url(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = %s AND query LIKE %s AND pid <> pg_backend_pid()",
            (dbname, "%pg_sleep%"),
        ).fetchall()
    return [row[0] for row in rows]


def test_statements_carry_traceparent_route_and_framework(tmp_path):
    support.require_service("postgres", "127.0.0.1", 5432)
    url, drop = support.create_postgres_database()
    dbname = url.rsplit("/", 1)[-1]
    try:
        with support_otlp.HttpReceiver() as receiver:
            env = support.project_env(
                DATABASE_URL=url,
                TRACING_SQL_COMMENTER="true",
                TESTPROJECT_VAR_DIR=str(tmp_path / "var"),
                **support.tracing_to(receiver.endpoint),
            )
            support.manage("migrate", "-v0", env=env)
            with support.gunicorn(env, tmp_path / "web.log", workers=1) as web:
                result = {}
                call = threading.Thread(
                    target=lambda: result.update(r=requests.get(web.url + "/api/db-sleep?ms=2000", timeout=20))
                )
                call.start()
                seen = support.wait_until(lambda: running_statements(dbname), timeout=30, message="pg_sleep running")
                call.join()
                assert result["r"].status_code == 200, web.output()[-2000:]
                spans = support.wait_until(
                    lambda: [s for s in receiver.spans if s.kind == SERVER and s.name == "GET api/db-sleep"],
                    message="request span",
                )
    finally:
        drop()
    (statement,) = seen
    (span,) = spans
    assert statement.startswith("SELECT pg_sleep(2.0) /*")
    assert f"traceparent='00-{span.trace_id}-" in statement
    assert "route='api/db-sleep'" in statement and "controller='db-sleep'" in statement
    assert "framework='django%3A" in statement and "%%" not in statement
    assert "db_driver='django.db.backends.postgresql'" in statement
    comment = statement[statement.index("/*") + 2 : statement.index("*/")]
    keys = [pair.split("=")[0] for pair in comment.split(",")]
    assert keys == sorted(keys)
    assert statement.count("/*") == 1
