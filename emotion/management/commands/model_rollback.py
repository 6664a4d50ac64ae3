from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from emotion.registry import model_version_rollback


class Command(BaseCommand):
    help = (
        "Take the active model version back: it becomes rolled_back and the version active "
        "before it is active again (workers pick it up at their next batch)."
    )

    def handle(self, *args, **options):
        try:
            mv = model_version_rollback()
        except ValidationError as e:
            raise CommandError("; ".join(e.messages)) from None
        self.stdout.write(f"active: {mv.pk} {mv.name} {mv.checkpoint_sha256[:12]}")
