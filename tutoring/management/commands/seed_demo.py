"""Create the missing demo accounts and courses; print the logins of those created now."""

from django.core.management.base import BaseCommand

from tutoring.services import demo_seed


class Command(BaseCommand):
    help = (
        "Create the demo admin, instructors, courses and learners that do not exist yet and "
        "print their logins (once, when created). Existing accounts are never changed (no "
        "password, flag or consent is reset), except that a demo account still carrying an "
        "earlier seed's placeholder name gets its demo name."
    )

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")
        parser.add_argument(
            "--if-no-users",
            action="store_true",
            help="create nothing when the database has any user already (what `make run` does)",
        )

    def handle(self, *args, base_url, if_no_users, **options):
        result = demo_seed(only_if_no_users=if_no_users)
        w = self.stdout.write
        if result["skipped"]:
            w(
                "Demo data not seeded: the database already has users "
                "(`manage.py seed_demo` adds the missing demo accounts; DEMO=0 skips this)."
            )
            return
        if result["users"]:
            w(self.style.SUCCESS("Demo accounts created (the passwords are shown only now):"))
            w(f"{'role':<12}{'username':<14}{'password':<18}token")
            for u in result["users"]:
                w(f"{u['role']:<12}{u['username']:<14}{u['password']:<18}{u['token']}")
            expiry = min(u["token_expiry"] for u in result["users"])
            # only the digest is stored: these keys can never be shown again, by any command
            w(
                f"API tokens valid until {expiry:%Y-%m-%d %H:%M %Z} and shown only now; "
                "get a new one from /api/auth/token/."
            )
        else:
            w("No demo account created.")
        if result["renamed"]:
            w(f"Placeholder names replaced by demo names: {', '.join(result['renamed'])}")
        if result["existing"]:
            w(f"Existing accounts left unchanged: {', '.join(result['existing'])}")
        for c in result["courses"]:
            w(
                f"course #{c['id']} {c['title']!r} created: instructor {c['instructor']}, "
                f"learners {', '.join(c['learners']) or '-'}"
            )
        w(f"Open {base_url}/ (admin: {base_url}/admin/, API docs: {base_url}/api/docs/)")
