from django.core.management.base import BaseCommand

from emotion.services import readings_requeue_stale


class Command(BaseCommand):
    help = (
        "Queue inference again for readings still pending (the periodic beat task does this "
        "every minute for readings older than 60 s; 'make run' runs it at start-up, where an "
        "embedded server that stopped mid-batch left some). Frames whose bytes are gone are "
        "recorded as frame_expired."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=float, default=0.0, metavar="SECONDS")

    def handle(self, *args, older_than, **options):
        n = readings_requeue_stale(older_than_s=older_than, backoff=False)
        self.stdout.write(f"{n} pending reading(s) queued again")
