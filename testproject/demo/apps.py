import os
from pathlib import Path

from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "testproject.demo"
    label = "demo"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Tests that signal a server must know its workers finished loading (django_observe's ready() ran
        # before this one): each process leaves a file named after its pid.
        ready_dir = os.environ.get("TESTPROJECT_READY_DIR")
        if ready_dir:
            Path(ready_dir).mkdir(parents=True, exist_ok=True)
            (Path(ready_dir) / str(os.getpid())).touch()
