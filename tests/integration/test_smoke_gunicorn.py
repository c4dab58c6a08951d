import requests

from tests import support


def test_gunicorn_serves_probes(tmp_path):
    env = support.sqlite_env(tmp_path)
    with support.gunicorn(env, tmp_path / "gunicorn.log") as server:
        assert requests.get(server.url + "/healthz", timeout=5).json() == {"status": "healthy"}
        ready = requests.get(server.url + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["database"] == "connected"
