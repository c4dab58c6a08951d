"""``manage.py observe_config [--reference]``: the effective configuration and where each value came from."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from django_observe import conf
from django_observe.conf import get_config


class Command(BaseCommand):
    help = "Show django_observe's effective configuration (secrets hidden), or print the reference table."

    def add_arguments(self, parser):
        parser.add_argument("--reference", action="store_true", help="Print the Markdown reference of every option.")

    def handle(self, *args, **options):
        if options["reference"]:
            self.stdout.write(conf.reference_markdown(), ending="")
            return
        try:
            config = get_config()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        for field in conf.option_fields():
            value = getattr(config, field.name)
            # A secret option that is unset shows as its empty value: saying it is unset leaks nothing.
            shown = conf.shown_value(
                value, secret=field.metadata["secret"] and bool(value), secret_keys=config.secret_key_names
            )
            self.stdout.write(f"{field.name.upper()} = {shown}  ({config.sources.get(field.name, 'default')})")
