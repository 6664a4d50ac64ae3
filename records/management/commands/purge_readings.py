from django.core.management.base import BaseCommand

from records.services import retention_purge_expired


class Command(BaseCommand):
    help = (
        "Delete what is past each course's retention period, as the periodic task does: "
        "readings captured before it, and ended sessions (with their readings) that ended "
        "before it. Active sessions are never deleted."
    )

    def handle(self, *args, **options):
        deleted = retention_purge_expired()
        for kind in ("readings", "sessions"):
            for course_id, n in sorted(deleted[kind].items()):
                self.stdout.write(f"course {course_id}: {n} {kind[:-1]}(s) deleted")
        self.stdout.write(
            self.style.SUCCESS(
                f"{sum(deleted['readings'].values())} reading(s) and "
                f"{sum(deleted['sessions'].values())} ended session(s) past retention deleted"
            )
        )
