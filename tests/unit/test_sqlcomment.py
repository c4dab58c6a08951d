"""The sqlcommenter comment: format, % doubling, never twice."""

import types

from django_observe.integrations.sqlcomment import SqlComments, SqlCommentWrapper, comment


def test_keys_sorted_values_quoted_before_a_trailing_semicolon():
    sql = comment("SELECT 1 ;", {"route": "a/<int:pk>", "framework": "django:5.2", "app_name": None}, params=False)
    assert sql == "SELECT 1 /*framework='django%3A5.2',route='a/%3Cint%3Apk%3E'*/;"


def test_percent_is_doubled_only_for_statements_with_parameters():
    assert comment("SELECT %s", {"framework": "django:5.2"}, params=True) == "SELECT %s /*framework='django%%3A5.2'*/"


def test_quotes_inside_values_are_encoded():
    assert "'" not in comment("SELECT 1", {"route": "it's"}, params=False).split("'")[1]


class _Connection:
    def __init__(self, wrappers=()):
        self.execute_wrappers = list(wrappers)
        self.settings_dict = {"ENGINE": "django.db.backends.sqlite3"}


def run(sql, connection, request=None):
    seen = []
    comments = SqlComments(tracing=False)
    token = comments.begin(request or types.SimpleNamespace(resolver_match=None))
    try:
        SqlCommentWrapper()(lambda s, p, m, c: seen.append(s), sql, None, False, {"connection": connection})
    finally:
        SqlComments.end(token)
    return seen[0]


def test_no_request_bound_means_no_comment():
    seen = []
    SqlCommentWrapper()(lambda s, p, m, c: seen.append(s), "SELECT 1", None, False, {"connection": _Connection()})
    assert seen == ["SELECT 1"]


def test_never_added_twice():
    once = run("SELECT 1", _Connection())
    assert once.count("/*") == 1
    assert run(once, _Connection()) == once


def test_the_contrib_commenter_on_the_connection_has_precedence():
    from opentelemetry.instrumentation.django.middleware.sqlcommenter_middleware import _QueryWrapper

    assert run("SELECT 1", _Connection([_QueryWrapper(None)])) == "SELECT 1"
