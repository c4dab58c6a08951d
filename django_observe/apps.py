"""``AppConfig.ready()``: build the runtime from the configuration and apply it (``django_observe.wiring``)."""

from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings
from django.core.signals import setting_changed

from . import checks, wiring

__all__ = ["DjangoObserveConfig"]

# Django imports this module in INSTALLED_APPS order, before any app's models or ready(): the apps listed
# after django_observe (django-prometheus) create their metrics in multiprocess mode.
wiring.prepare(settings)


class DjangoObserveConfig(AppConfig):
    name = "django_observe"
    verbose_name = "django-observe"

    def ready(self) -> None:
        checks.register(settings)
        wiring.start(settings)
        setting_changed.connect(wiring.on_setting_changed, dispatch_uid="django_observe.setting_changed")
