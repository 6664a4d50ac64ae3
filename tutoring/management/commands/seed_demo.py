"""Create (idempotently) the demo accounts and print how to log in."""

from django.core.management.base import BaseCommand

from tutoring.services import demo_seed


class Command(BaseCommand):
    help = "Create demo admin, instructors, courses and learners (idempotent) and print logins."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args, base_url, **options):
        result = demo_seed()
        w = self.stdout.write
        w(self.style.SUCCESS("Demo data ready."))
        w(f"{'role':<12}{'username':<14}{'password':<18}token")
        for u in result["users"]:
            w(f"{u['role']:<12}{u['username']:<14}{u['password']:<18}{u['token']}")
        for c in result["courses"]:
            w(
                f"course #{c['id']} {c['title']!r}: instructor {c['instructor']}, "
                f"learners {', '.join(c['learners'])}"
            )
        w(f"Open {base_url}/ (admin: {base_url}/admin/, API docs: {base_url}/api/docs/)")
