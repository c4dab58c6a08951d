"""A migration the test database has not applied."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("demo", "0001_initial")]
    operations = [migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop)]
