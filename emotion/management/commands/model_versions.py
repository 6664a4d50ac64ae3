from django.core.management.base import BaseCommand

from emotion.registry import key_figures, model_versions


def _pct(value) -> str:
    return "—" if value is None else f"{value:.4f}"


class Command(BaseCommand):
    help = "List the model registry: every checkpoint once, newest first (docs/models.md)."

    def handle(self, *args, **options):
        rows = [
            (
                "id",
                "name",
                "sha12",
                "status",
                "parent",
                "FER val acc",
                "reviewed acc",
                "promoted_at",
            )
        ]
        for mv in model_versions():
            figs = key_figures(mv)
            rows.append(
                (
                    str(mv.pk),
                    mv.name,
                    mv.checkpoint_sha256[:12],
                    mv.status,
                    mv.parent.checkpoint_sha256[:12] if mv.parent else "—",
                    _pct(figs["fer_val"]["child"]),
                    _pct(figs["reviewed"]["child"]),
                    mv.promoted_at.isoformat(timespec="seconds") if mv.promoted_at else "—",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            self.stdout.write(
                "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            )
