"""The admin of tutoring's users, courses, enrollments and sessions, whose deletes (and the
erasure action) go through ``records.services``: open sessions ended and announced first,
readings deleted with them. Consents and API tokens are in ``tutoring.admin``."""

from collections import Counter

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import ValidationError
from django.template.response import TemplateResponse

from records import selectors, services
from tutoring import services as tutoring_services
from tutoring.admin import learner_column
from tutoring.models import Course, Enrollment, LearnerSession, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "display_name", "role", "email", "is_active")
    list_filter = ("role", "is_active", "is_staff")
    fieldsets = BaseUserAdmin.fieldsets + (("Role", {"fields": ("role",)}),)
    add_fieldsets = BaseUserAdmin.add_fieldsets + (("Role", {"fields": ("role",)}),)
    actions = ["erase_learner_data"]

    def delete_model(self, request, obj):
        services.user_delete(user=obj)

    def delete_queryset(self, request, queryset):
        # one at a time, through the service: open sessions are ended and announced first
        for user in queryset:
            services.user_delete(user=user)

    def has_erase_permission(self, request) -> bool:
        return request.user.has_perm("tutoring.delete_learnersession")

    @admin.action(
        description="Erase the learning data of the selected users (on their request)",
        permissions=["erase"],
    )
    def erase_learner_data(self, request, queryset):
        """A learner's erasure request handled by staff: the same service as the learner's own
        erase page (open sessions ended and announced, sessions and readings deleted, consent
        records kept, active ones revoked), after a confirmation page listing what goes."""
        users = list(queryset.order_by("username"))
        if request.POST.get("confirm") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "title": "Erase learner data",
                "opts": self.model._meta,
                "rows": [(u, selectors.learner_data_counts(learner=u)) for u in users],
                "queryset": users,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "action": "erase_learner_data",
            }
            return TemplateResponse(
                request, "admin/tutoring/user/erase_learner_data_confirmation.html", context
            )
        totals = Counter()
        for user in users:
            erased = services.learner_data_erase(learner=user)
            totals.update(erased)
            self.log_change(
                request,
                user,
                "Learning data erased on request: {sessions} session(s), {readings} reading(s); "
                "{consents_revoked} active consent(s) revoked".format(**erased),
            )
        self.message_user(
            request,
            f"Erased the learning data of {len(users)} user(s): {totals['sessions']} session(s), "
            f"{totals['readings']} reading(s); {totals['consents_revoked']} active consent(s) "
            "revoked. Consent records are kept.",
            messages.SUCCESS,
        )
        return None


class EnrollmentForm(forms.ModelForm):
    """An enrollment is added or deleted, never re-pointed: moving it to another learner or
    course would remove the first one from the course without ending their sessions or
    revoking their consent (``services.enrollment_delete``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            for name in ("course", "learner"):
                if name in self.fields:
                    self.fields[name].disabled = True


class EnrollmentInlineFormSet(forms.BaseInlineFormSet):
    def delete_existing(self, obj, commit=True):
        # a row ticked "delete" on the course page: through the service, as the admin's delete
        if commit:
            services.enrollment_delete(enrollment=obj)


class EnrollmentInline(admin.TabularInline):
    model = Enrollment
    form = EnrollmentForm
    formset = EnrollmentInlineFormSet
    extra = 0
    autocomplete_fields = ("learner",)


class CourseAdminForm(forms.ModelForm):
    """The admin builds the model form on this base (no Meta: its fields are the admin's)."""

    def clean_consent_policy_version(self):
        version = self.cleaned_data["consent_policy_version"]
        if self.instance.pk is not None:
            probe = Course(pk=self.instance.pk, consent_policy_version=version)
            try:
                tutoring_services.course_policy_version_check(course=probe)
            except ValidationError as e:
                raise ValidationError(e.message_dict["consent_policy_version"]) from None
        return version


@admin.register(Course)
class CourseAdmin(admin.ModelAdmin):
    form = CourseAdminForm
    list_display = (
        "title",
        "emotion_inference_enabled",
        "keep_face_crops",
        "allow_full_pictures",
        "capture_fps",
        "min_capture_fps",
        "attention_cone_degrees",
        "uncertainty_threshold",
        "retention_days",
        "created_at",
    )
    list_filter = ("emotion_inference_enabled", "keep_face_crops", "allow_full_pictures")
    search_fields = ("title", "instructors__username")
    filter_horizontal = ("instructors",)
    inlines = [EnrollmentInline]

    def delete_model(self, request, obj):
        services.course_delete(course=obj)

    def delete_queryset(self, request, queryset):
        for course in queryset:
            services.course_delete(course=course)

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        widened = tutoring_services.course_update(course=obj)
        if widened:
            self.message_user(
                request,
                f"The data policy now takes more ({'; '.join(widened)}): it is version "
                f"{obj.consent_policy_version}, open sessions were ended and every learner "
                "must give consent again before recording.",
                level=messages.WARNING,
            )


@admin.register(Enrollment)
class EnrollmentAdmin(admin.ModelAdmin):
    form = EnrollmentForm
    list_display = (learner_column, "course", "created_at")
    list_select_related = ("learner", "course")
    list_filter = ("course",)
    search_fields = (
        "learner__username",
        "learner__first_name",
        "learner__last_name",
        "course__title",
    )

    def delete_model(self, request, obj):
        services.enrollment_delete(enrollment=obj)

    def delete_queryset(self, request, queryset):
        # one at a time, through the service: open sessions ended and announced, consent revoked
        for enrollment in queryset:
            services.enrollment_delete(enrollment=enrollment)


@admin.register(LearnerSession)
class LearnerSessionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        learner_column,
        "course",
        "status",
        "started_at",
        "ended_at",
        "emotion_enabled",
        "last_frame_at",
    )
    list_filter = ("status", "course", "emotion_enabled")
    list_select_related = ("learner", "course")
    search_fields = (
        "learner__username",
        "learner__first_name",
        "learner__last_name",
        "course__title",
    )
    date_hierarchy = "started_at"
    # A session is a record of what was taken under which consent: staff see it, end it by
    # deleting it, never edit it (turning emotion_enabled on for a learner who declined it,
    # moving it to another course, swapping its consent) nor make one without the learner.
    readonly_fields = tuple(f.name for f in LearnerSession._meta.fields if not f.primary_key)

    def has_add_permission(self, request):
        return False

    def delete_model(self, request, obj):
        services.session_delete(session=obj)

    def delete_queryset(self, request, queryset):
        # one at a time, through the service: an open session is ended and announced first
        for session in queryset:
            services.session_delete(session=session)
