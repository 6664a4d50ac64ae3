from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from emotion.registry import model_version_activate, model_version_register
from ml.checkpoint import CheckpointError


class Command(BaseCommand):
    help = (
        "Register a checkpoint file as a candidate version (its sha256, name, recipe and "
        "metrics come from the file). --activate pins it as the active version at once, "
        "without the promotion check (docs/models.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--activate", action="store_true")

    def handle(self, *args, path, activate, **options):
        try:
            mv = model_version_register(path=path)
            if activate and mv.status != mv.Status.ACTIVE:
                mv = model_version_activate(
                    version=mv, reason="pinned by an operator (model_register --activate)"
                )
        except (CheckpointError, ValidationError) as e:
            raise CommandError(_one_line(e)) from None
        self.stdout.write(f"{mv.pk} {mv.name} {mv.checkpoint_sha256[:12]} {mv.status}")


def _one_line(e: Exception) -> str:
    return "; ".join(e.messages) if isinstance(e, ValidationError) else str(e)
