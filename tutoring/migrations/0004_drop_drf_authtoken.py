"""API tokens moved from DRF's authtoken app (keys stored in plain text) to django-rest-knox
(digests only). The old keys cannot be converted into knox tokens without keeping them usable
in plain text, so they are dropped: every script signs in again at /api/auth/token/.

authtoken is no longer installed, so its table, migration records and permissions are removed
here (``migrate authtoken zero`` is impossible once the app is gone). Nothing to do on a
database that never had them; not reversible into the old keys.
"""

from django.db import migrations


def drop_authtoken(apps, schema_editor):
    connection = schema_editor.connection
    if "authtoken_token" in connection.introspection.table_names():
        schema_editor.execute("DROP TABLE authtoken_token")
    schema_editor.execute("DELETE FROM django_migrations WHERE app = 'authtoken'")
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="authtoken").delete()  # and their permissions


class Migration(migrations.Migration):
    dependencies = [
        ("tutoring", "0003_session_open_idx"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [migrations.RunPython(drop_authtoken, migrations.RunPython.noop)]
