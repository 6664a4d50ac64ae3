from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from emotion.models import ModelVersion
from emotion.registry import model_version_promote


class Command(BaseCommand):
    help = (
        "Judge a candidate version against the active one and promote it when it passes: not "
        "worse on FER2013 validation beyond MODEL_PROMOTION_TOLERANCE, and better on the "
        "held-out reviewed slice. Prints the decision; exits 1 when refused."
    )

    def add_arguments(self, parser):
        parser.add_argument("id", type=int)
        parser.add_argument("--force", action="store_true", help="promote even when refused")
        parser.add_argument("--tolerance", type=float, default=None)

    def handle(self, *args, id, force, tolerance, **options):
        mv = ModelVersion.objects.filter(pk=id).first()
        if mv is None:
            raise CommandError(f"no model version {id} (see manage.py model_versions)")
        try:
            mv = model_version_promote(version=mv, force=force, tolerance=tolerance)
        except ValidationError as e:
            raise CommandError("; ".join(e.messages)) from None
        d = mv.decision
        for name, f in d["figures"].items():
            self.stdout.write(
                f"{name}: candidate {f['candidate']} active {f['active']} (n={f['n']})"
            )
        self.stdout.write(f"tolerance {d['tolerance']}, minimum reviewed {d['min_reviewed']}")
        self.stdout.write(f"{d['outcome']}: {d['reason']}")
        if d["outcome"] == "refused":
            raise CommandError(f"refused: {d['reason']}")
