"""Custom django-health-check checks used by the tests (as a customer would write them)."""

import dataclasses

from health_check import HealthCheck
from health_check.exceptions import ServiceUnavailable, ServiceWarning


@dataclasses.dataclass
class AlwaysWarns(HealthCheck):
    async def run(self):
        raise ServiceWarning("quota at 91%")


@dataclasses.dataclass
class AlwaysFails(HealthCheck):
    def run(self):
        raise ServiceUnavailable("payment provider unreachable")


RELEASE_HUNG = __import__("threading").Event()
HUNG_RUNS = []


@dataclasses.dataclass
class Hangs(HealthCheck):
    """A sync check stuck in a driver call for 20 s (released early by the tests through ``RELEASE_HUNG``)."""

    def run(self):
        HUNG_RUNS.append(1)
        RELEASE_HUNG.wait(20)


@dataclasses.dataclass
class LeaksHost(HealthCheck):
    """A customer check whose public message names a DSN with a password and hosts."""

    def run(self):
        raise ServiceUnavailable("upstream redis://:SECRET@10.0.0.5 refused; fallback cache-2.internal:6380 down")


PLANTED_DSN = "postgres://app:PLANTED9000x@db.internal:5432/app"


@dataclasses.dataclass
class LeaksDsnPassword(HealthCheck):
    """A customer check whose public message holds a DSN whose password is a planted marker (hostile corpus)."""

    def run(self):
        raise ServiceUnavailable(f"upstream {PLANTED_DSN} refused (password=PLANTED9001x)")
