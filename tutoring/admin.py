from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from tutoring.models import Consent, Course, Enrollment, LearnerSession, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "role", "first_name", "last_name", "email", "is_active")
    list_filter = ("role", "is_active", "is_staff")
    fieldsets = BaseUserAdmin.fieldsets + (("Role", {"fields": ("role",)}),)
    add_fieldsets = BaseUserAdmin.add_fieldsets + (("Role", {"fields": ("role",)}),)


class EnrollmentInline(admin.TabularInline):
    model = Enrollment
    extra = 0
    autocomplete_fields = ("learner",)


@admin.register(Course)
class CourseAdmin(admin.ModelAdmin):
    list_display = (
        "title",
        "emotion_inference_enabled",
        "keep_face_crops",
        "retention_days",
        "created_at",
    )
    list_filter = ("emotion_inference_enabled", "keep_face_crops")
    search_fields = ("title", "instructors__username")
    filter_horizontal = ("instructors",)
    inlines = [EnrollmentInline]


@admin.register(Enrollment)
class EnrollmentAdmin(admin.ModelAdmin):
    list_display = ("learner", "course", "created_at")
    list_filter = ("course",)
    search_fields = ("learner__username", "course__title")


@admin.register(Consent)
class ConsentAdmin(admin.ModelAdmin):
    list_display = (
        "learner",
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
    search_fields = ("learner__username", "course__title")
    readonly_fields = list_display  # consent rows are a record: never edited by staff

    def has_add_permission(self, request):  # consent is given by the learner, never by staff
        return False


@admin.register(LearnerSession)
class LearnerSessionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "learner",
        "course",
        "status",
        "started_at",
        "ended_at",
        "emotion_enabled",
        "last_frame_at",
    )
    list_filter = ("status", "course", "emotion_enabled")
    search_fields = ("learner__username", "course__title")
    date_hierarchy = "started_at"
    raw_id_fields = ("consent",)
