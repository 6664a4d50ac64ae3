from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from emotion.finetuning import MIN_CROPS, model_finetune
from emotion.registry import model_version_promote
from ml.finetune import FinetuneConfig, FinetuneError


class Command(BaseCommand):
    help = (
        "Fine-tune the active model on the reviewed face crops (split by learner), evaluate "
        "parent and child on FER2013 validation and the held-back reviewed crops, and register "
        "the new checkpoint as a candidate. --promote judges it at once (docs/models.md)."
    )

    def add_arguments(self, parser):
        d = FinetuneConfig()
        parser.add_argument("--epochs", type=int, default=d.epochs)
        parser.add_argument("--lr", type=float, default=d.lr)
        parser.add_argument("--batch-size", type=int, default=d.batch_size)
        parser.add_argument("--freeze", choices=("none", "features"), default=d.freeze)
        parser.add_argument(
            "--replay", type=int, default=d.replay, help="FER2013 train images mixed in an epoch"
        )
        parser.add_argument("--test-fraction", type=float, default=d.test_fraction)
        parser.add_argument("--seed", type=int, default=d.seed)
        parser.add_argument("--device", default=d.device)
        parser.add_argument(
            "--fer-val-limit", type=int, default=None, help="score on this many FER2013 faces"
        )
        parser.add_argument("--min-crops", type=int, default=MIN_CROPS)
        parser.add_argument("--promote", action="store_true", help="judge the candidate now")

    def handle(self, *args, fer_val_limit, min_crops, promote, **o):
        config = FinetuneConfig(
            epochs=o["epochs"],
            lr=o["lr"],
            batch_size=o["batch_size"],
            freeze=o["freeze"],
            replay=o["replay"],
            test_fraction=o["test_fraction"],
            seed=o["seed"],
            device=o["device"],
        )
        try:
            config.check()
            mv = model_finetune(
                config=config,
                fer_val_limit=fer_val_limit,
                min_crops=min_crops,
                progress=self.stdout.write,
            )
            if promote:
                mv = model_version_promote(version=mv)
        except FinetuneError as e:
            raise CommandError(str(e)) from None
        except ValidationError as e:
            raise CommandError("; ".join(e.messages)) from None
        for name, m in (("FER2013 validation", "fer2013_val"), ("reviewed slice", "reviewed_test")):
            f = mv.metrics.get(m) or {}
            acc = [(f.get(k) or {}).get("accuracy") for k in ("parent", "child")]
            self.stdout.write(f"{name}: parent {acc[0]} child {acc[1]} (n={f.get('n')})")
        self.stdout.write(f"candidate {mv.pk} {mv.name} {mv.checkpoint_sha256[:12]} {mv.status}")
        if promote:
            self.stdout.write(f"{mv.decision['outcome']}: {mv.decision['reason']}")
            if mv.decision["outcome"] == "refused":
                raise CommandError(f"refused: {mv.decision['reason']}")
