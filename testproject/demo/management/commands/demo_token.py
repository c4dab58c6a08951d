from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from testproject.demo.models import ApiToken


class Command(BaseCommand):
    help = "Create (or reuse) a demo user and print an API token for Authorization: Bearer <token>."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")

    def handle(self, *args, **options):
        user, _ = get_user_model().objects.get_or_create(username=options["username"])
        token = ApiToken.objects.filter(user=user).first() or ApiToken.objects.create(user=user)
        self.stdout.write(token.key)
