import pytest

from django_observe import process, redaction


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("redis://:s3cret@127.0.0.1:6379/0", "s3cret"),
        ("postgres://app:hunter2@db/app", "hunter2"),
        ("host=db password=hunter2 dbname=app", "hunter2"),
        ("GET /x?token=abc123&page=2", "abc123"),
        ("Authorization: Bearer-xyz", "Bearer-xyz"),
        ("api_key='k-123'", "k-123"),
    ],
)
def test_redact_text(text, secret):
    out = redaction.redact_text(text)
    assert secret not in out
    assert redaction.REDACTED in out


def test_redact_keeps_harmless_text():
    assert redaction.redact_text("Cannot connect to PostgreSQL at db:5432") == "Cannot connect to PostgreSQL at db:5432"
    assert redaction.redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("key", ["password", "API_KEY", "Authorization", "Set-Cookie", "csrftoken", "sessionid"])
def test_secret_keys(key):
    assert redaction.is_secret_key(key)


@pytest.mark.parametrize(
    ("argv", "role"),
    [
        (["/venv/bin/gunicorn", "proj.wsgi"], "web"),
        (["/venv/bin/uvicorn", "proj.asgi:application"], "web"),
        (["manage.py", "runserver"], "command"),
        (["manage.py", "runserver", "--noreload"], "web"),
        (["manage.py", "migrate"], "command"),
        (["manage.py", "shell", "-c", "1"], "command"),
        (["/venv/bin/celery", "-A", "proj", "worker"], "worker"),
        (["/venv/bin/celery", "-A", "proj", "inspect", "ping"], "command"),
        (["/venv/bin/pytest"], "command"),
        (["/venv/lib/python3.11/site-packages/gunicorn/__main__.py", "proj.wsgi"], "web"),
        (["/venv/lib/python3.11/site-packages/uvicorn/__main__.py", "proj.asgi:app"], "web"),
        (["/venv/lib/python3.11/site-packages/celery/__main__.py", "-A", "proj", "worker"], "worker"),
        (["/venv/lib/python3.11/site-packages/django/__main__.py", "migrate"], "command"),
    ],
)
def test_process_role(argv, role, monkeypatch):
    monkeypatch.delenv("RUN_MAIN", raising=False)
    assert process.process_role(argv) == role


def test_runserver_child_is_web(monkeypatch):
    monkeypatch.setenv("RUN_MAIN", "true")
    assert process.process_role(["manage.py", "runserver"]) == "web"


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["/srv/django-shop/.venv/lib/python3.12/site-packages/gunicorn/__main__.py", "proj.wsgi"], False),
        (["/srv/django-shop/.venv/lib/python3.12/site-packages/celery/__main__.py", "worker"], False),
        (["/usr/lib/python3/site-packages/django/__main__.py", "migrate"], True),
        (["/srv/django-shop/manage.py", "migrate"], True),
    ],
)
def test_a_server_under_a_path_with_django_in_it_is_not_a_command(argv, command):
    assert process.is_management_command(argv) is command
