from django_observe.slo import *  # noqa: F403
from django_observe.slo import Objective, parse_objectives, threshold_problem  # noqa: F401
