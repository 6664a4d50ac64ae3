from django.apps import AppConfig


class EmotionConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "emotion"
    verbose_name = "Emotion recognition"

    def ready(self):
        from emotion import receivers  # noqa: F401  (connects the signal receivers)
