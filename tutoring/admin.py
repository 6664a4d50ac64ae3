"""The admin of consents and API tokens. Users, courses, enrollments and sessions, whose
deletes remove readings too, are registered by ``records.admin``."""

from django.contrib import admin
from knox.models import AuthToken

from tutoring.models import Consent


@admin.display(description="learner", ordering="learner__username")
def learner_column(obj) -> str:
    """The learner as every page names them, with the username they are searched by."""
    return f"{obj.learner.display_name} ({obj.learner.username})"


# knox's own admin lets staff mint a key for any account, with no expiry if left blank: here
# tokens are only listed and revoked (deleted); keys come from /api/auth/token/ alone
admin.site.unregister(AuthToken)


@admin.register(AuthToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("user", "created", "expiry")
    list_filter = ("expiry",)
    search_fields = ("user__username",)
    fields = readonly_fields = ("user", "created", "expiry")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Consent)
class ConsentAdmin(admin.ModelAdmin):
    list_display = (
        learner_column,
        "course",
        "engagement",
        "emotion",
        "policy_version",
        "granted_at",
        "revoked_at",
    )
    list_filter = (
        "course",
        "emotion",
        "policy_version",
        ("revoked_at", admin.EmptyFieldListFilter),
    )
    search_fields = (
        "learner__username",
        "learner__first_name",
        "learner__last_name",
        "course__title",
    )
    # consent rows are a record: never edited by staff
    readonly_fields = ("learner", *list_display[1:])
    list_select_related = ("learner", "course")

    def has_add_permission(self, request):  # consent is given by the learner, never by staff
        return False

    def has_delete_permission(self, request, obj=None):
        # The rows are the consent history: staff cannot delete them. A superuser can, which
        # Django also asks when a whole user or course is deleted (the rows go with it).
        return request.user.is_active and request.user.is_superuser
