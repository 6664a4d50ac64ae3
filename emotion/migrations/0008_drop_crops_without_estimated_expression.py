"""Delete face crops kept before crops were limited to estimated expressions: those of
learners who agreed to engagement analysis only (and of readings with no expression)."""

from django.db import migrations


def drop_crops(apps, schema_editor):
    Reading = apps.get_model("emotion", "Reading")
    Reading.objects.filter(face_crop__isnull=False, label__isnull=True).update(face_crop=None)


class Migration(migrations.Migration):
    dependencies = [("emotion", "0007_reading_lost_runs")]

    operations = [migrations.RunPython(drop_crops, migrations.RunPython.noop)]
