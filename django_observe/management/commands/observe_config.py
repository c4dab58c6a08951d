"""``manage.py observe_config [--reference]``: the effective configuration and where each value came from."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from django_observe import conf
from django_observe.runtime import get_runtime


class Command(BaseCommand):
    help = "Show django_observe's effective configuration (secrets hidden), or print the reference table."

    def add_arguments(self, parser):
        parser.add_argument("--reference", action="store_true", help="Print the Markdown reference of every option.")

    def handle(self, *args, **options):
        if options["reference"]:
            self.stdout.write(conf.reference_markdown(), ending="")
            return
        config = get_runtime().config
        for name in conf.option_names():
            field = name.lower()
            value = getattr(config, field)
            secret = next(f for f in conf._options() if f.name == field).metadata["secret"]
            shown = "<hidden>" if secret and value else repr(value)
            self.stdout.write(f"{name} = {shown}  ({config.sources.get(field, 'default')})")
