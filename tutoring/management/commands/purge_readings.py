from django.core.management.base import BaseCommand

from tutoring.services import readings_purge_expired


class Command(BaseCommand):
    help = "Delete readings older than each course's retention period (as the nightly task does)."

    def handle(self, *args, **options):
        deleted = readings_purge_expired()
        total = sum(deleted.values())
        for course_id, n in sorted(deleted.items()):
            self.stdout.write(f"course {course_id}: {n} reading(s) deleted")
        self.stdout.write(self.style.SUCCESS(f"{total} reading(s) past retention deleted"))
