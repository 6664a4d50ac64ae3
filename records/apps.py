from django.apps import AppConfig


class RecordsConfig(AppConfig):
    """What is kept about learners: reports, timelines, export, erasure, deletion, retention.

    It has no models: it reads and deletes those of ``tutoring`` (sessions, consents) and
    ``emotion`` (readings) together, and is the one app that imports both.
    """

    default_auto_field = "django.db.models.BigAutoField"
    name = "records"
    label = "records"
    verbose_name = "Learner records"
