"""/readyz answers 503 when any one critical check fails, and only then (docs: health); /health too.

One table-driven test per built-in check id (each critical one failing alone gives 503, each non-critical one
gives 200), and one over the test project's real checks (each of them failing alone gives 503).
"""

import dataclasses

import pytest
from health_check import HealthCheck
from health_check.exceptions import ServiceUnavailable

from django_observe.health.registry import BUILTIN_CRITICAL, CheckSpec
from django_observe.runtime import get_runtime


@dataclasses.dataclass
class Switch(HealthCheck):
    failing: bool = False

    def run(self):
        if self.failing:
            raise ServiceUnavailable("down on purpose")


@pytest.fixture
def runner(monkeypatch):
    runner = get_runtime().health
    switches = {check_id: Switch() for check_id in BUILTIN_CRITICAL}
    specs = {
        check_id: CheckSpec(check_id, switch, BUILTIN_CRITICAL[check_id], 5.0) for check_id, switch in switches.items()
    }
    monkeypatch.setattr(runner, "specs", specs)
    runner.clear_cache()
    yield runner, switches
    runner.clear_cache()


def statuses(client, runner):
    runner.clear_cache()
    return client.get("/readyz").status_code, client.get("/health").status_code


@pytest.mark.django_db
@pytest.mark.parametrize("check_id", sorted(BUILTIN_CRITICAL))
def test_one_failing_check_gives_503_exactly_when_it_is_critical(client, runner, check_id):
    runner, switches = runner
    assert statuses(client, runner) == (200, 200)
    switches[check_id].failing = True
    expected = 503 if BUILTIN_CRITICAL[check_id] else 200
    assert statuses(client, runner) == (expected, expected), check_id


def test_the_built_in_table_has_critical_checks():
    assert {check_id for check_id, critical in BUILTIN_CRITICAL.items() if critical} >= {"database", "migrations"}


@pytest.mark.django_db
def test_each_real_critical_check_failing_alone_gives_503(client, monkeypatch):
    runner = get_runtime().health
    critical = [spec for spec in runner.specs.values() if spec.critical]
    assert {spec.id.split(":")[0] for spec in critical} >= {"database", "migrations"}
    runner.clear_cache()
    assert client.get("/readyz").status_code == 200
    for spec in critical:

        def down():
            raise ServiceUnavailable("down on purpose")

        with monkeypatch.context() as patch:
            patch.setattr(spec.check, "run", down)
            runner.clear_cache()
            response = client.get("/readyz")
        assert response.status_code == 503, spec.id
        runner.clear_cache()
        assert client.get("/readyz").status_code == 200, f"{spec.id} restored"
