"""A partial index on the readings still waiting for inference.

The readings table is the large one: on PostgreSQL the index is built CONCURRENTLY, so frames
keep being accepted while it builds (a plain CREATE INDEX blocks writes for the whole scan).
Other databases (SQLite, the embedded default) build it the plain way.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_forwards(
            self, app_label, schema_editor, from_state, to_state
        )

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_backwards(
            self, app_label, schema_editor, from_state, to_state
        )


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("emotion", "0005_reading_requeued_at"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="reading",
            index=models.Index(
                condition=models.Q(("analysed_at__isnull", True)),
                fields=["session"],
                name="reading_pending_idx",
            ),
        ),
    ]
