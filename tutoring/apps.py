from django.apps import AppConfig


class TutoringConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "tutoring"
    verbose_name = "Tutoring"

    def ready(self):
        from tutoring import receivers  # noqa: F401  (connects the signal receivers)
