import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils.html import format_html

from emotion import selectors, services
from emotion.models import LabelReview, ModelVersion, Reading
from emotion.registry import key_figures, model_version_promote, model_version_rollback


def _json(value) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


def _acc(value) -> str:
    return "—" if value is None else f"{value:.4f}"


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """The model registry: versions, their figures and decisions, read-only; promotion (with
    its check) and rollback are actions, as in ``manage.py model_promote``/``model_rollback``."""

    list_display = (
        "name",
        "sha12",
        "precision",
        "status",
        "parent_sha12",
        "fer_val_accuracy",
        "reviewed_accuracy",
        "promoted_at",
        "created_at",
    )
    list_filter = ("status", "precision")
    search_fields = ("name", "checkpoint_sha256")
    readonly_fields = (
        "name",
        "checkpoint_sha256",
        "precision",
        "status",
        "path",
        "parent",
        "promoted_at",
        "retired_at",
        "created_at",
        "recipe_json",
        "metrics_json",
        "decision_json",
    )
    exclude = ("recipe", "metrics", "decision")
    actions = ("promote", "roll_back")

    @admin.display(description="sha256")
    def sha12(self, obj):
        return obj.checkpoint_sha256[:12]

    @admin.display(description="parent")
    def parent_sha12(self, obj):
        return obj.parent.checkpoint_sha256[:12] if obj.parent else "—"

    @admin.display(description="FER2013 val acc")
    def fer_val_accuracy(self, obj):
        return _acc(key_figures(obj)["fer_val"]["child"])

    @admin.display(description="reviewed slice acc")
    def reviewed_accuracy(self, obj):
        return _acc(key_figures(obj)["reviewed"]["child"])

    @admin.display(description="recipe")
    def recipe_json(self, obj):
        return _json(obj.recipe)

    @admin.display(description="metrics")
    def metrics_json(self, obj):
        return _json(obj.metrics)

    @admin.display(description="decision")
    def decision_json(self, obj):
        return _json(obj.decision)

    @admin.action(description="Promote (runs the check)", permissions=["change"])
    def promote(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select one version to promote.", messages.ERROR)
            return
        try:
            mv = model_version_promote(version=queryset.get())
        except ValidationError as e:
            self.message_user(request, "; ".join(e.messages), messages.ERROR)
            return
        level = messages.SUCCESS if mv.status == ModelVersion.Status.ACTIVE else messages.ERROR
        self.message_user(request, f"{mv.decision['outcome']}: {mv.decision['reason']}", level)

    @admin.action(description="Roll back the active version", permissions=["change"])
    def roll_back(self, request, queryset):
        try:
            mv = model_version_rollback()
        except ValidationError as e:
            self.message_user(request, "; ".join(e.messages), messages.ERROR)
            return
        self.message_user(request, f"rolled back: {mv} is active again", messages.SUCCESS)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # readings point at their version; the history stays


@admin.register(LabelReview)
class LabelReviewAdmin(admin.ModelAdmin):
    """Every reviewer's labels, to look through; no add or change (a label is given or
    corrected through ``reading_review``). Deleting one takes it back through
    ``reading_review_withdraw``, so the reading's ``reviewed_label`` settles on the rest; the
    delete permission stays, as deleting a session, course or reading deletes its reviews."""

    list_display = ("reading", "reviewer", "label", "created_at")
    list_filter = ("label", "reading__review_reason", "reviewer")
    raw_id_fields = ("reading",)
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        services.reading_review_withdraw(reading=obj.reading, reviewer=obj.reviewer)

    def delete_queryset(self, request, queryset):
        for review in queryset.select_related("reading", "reviewer"):
            self.delete_model(request, review)


class ReviewedFilter(admin.SimpleListFilter):
    title = "review"
    parameter_name = "review"

    def lookups(self, request, model_admin):
        return [
            ("todo", "not reviewed"),
            ("agree", "reviewer agrees"),
            ("disagree", "reviewer disagrees"),
        ]

    def queryset(self, request, qs):
        from django.db.models import F

        if self.value() == "todo":  # expressions the model estimated, with the learner's consent
            return qs.filter(label__isnull=False, reviewed_label__isnull=True)
        if self.value() == "agree":
            return qs.filter(reviewed_label=F("label"))
        if self.value() == "disagree":
            return qs.exclude(reviewed_label__isnull=True).exclude(reviewed_label=F("label"))
        return qs


class CropFilter(admin.SimpleListFilter):
    title = "face crop"
    parameter_name = "crop"

    def lookups(self, request, model_admin):
        return [("kept", "kept (can be judged)"), ("none", "none")]

    def queryset(self, request, qs):
        kept = Q(face_crop__isnull=False) & ~Q(face_crop=b"")
        if self.value() == "kept":
            return qs.filter(kept)
        if self.value() == "none":
            return qs.exclude(kept)
        return qs


class ReviewForm(forms.ModelForm):
    class Meta:
        model = Reading
        fields = ("reviewed_label",)

    def clean_reviewed_label(self):
        value = self.cleaned_data["reviewed_label"]
        if value and value != self.instance.reviewed_label:
            refusal = selectors.review_refusal(reading=self.instance)
            if refusal is not None:
                raise forms.ValidationError(refusal)
        return value


class LabelReviewInline(admin.TabularInline):
    """Each reviewer's own label; read-only here (a label is given or corrected through
    ``reading_review``, which settles the reading's ``reviewed_label``)."""

    model = LabelReview
    fields = ("reviewer", "label", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Reading)
class ReadingAdmin(admin.ModelAdmin):
    """Label review: a reviewer's ``reviewed_label`` (list-editable) is recorded as their own
    review (``reading_review``; clearing it takes their review back), and the reading's label
    is what all its reviews settle on. The changelist shows the reviewers' agreement."""

    # what a reviewer judges first, so it fits a laptop screen (the review page, /review/,
    # is the one made for going through the queue)
    list_display = (
        "crop",
        "label",
        "confidence",
        "reviewed_label",
        "id",
        "session",
        "captured_at",
        "face_found",
    )
    list_display_links = ("id",)
    list_editable = ("reviewed_label",)
    list_filter = (
        ReviewedFilter,
        CropFilter,
        "review_reason",
        "uncertain",
        "face_found",
        "label",
        "session__course",
        "model_version",
    )
    search_fields = (
        "session__learner__username",
        "session__learner__first_name",
        "session__learner__last_name",
        "session__course__title",
    )
    date_hierarchy = "captured_at"
    raw_id_fields = ("session",)
    # everything but the reviewer's label is what the pipeline recorded
    readonly_fields = tuple(
        f.name
        for f in Reading._meta.concrete_fields
        if f.name not in ("id", "face_crop", "reviewed_label")
    ) + ("crop",)
    exclude = ("face_crop",)
    form = ReviewForm
    inlines = (LabelReviewInline,)

    def get_changelist_form(self, request, **kwargs):
        return ReviewForm

    @admin.display(description="face crop")
    def crop(self, obj):
        if not obj.face_crop:
            return "—"
        import base64

        data = base64.b64encode(bytes(obj.face_crop)).decode()
        return format_html(
            '<img src="data:image/png;base64,{}" width="48" height="48" alt="">', data
        )

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "agreement": selectors.review_agreement()}
        return super().changelist_view(request, extra_context)

    def save_model(self, request, obj, form, change):
        # reviewed_label is the only editable field: what the reviewer says goes through the
        # service as their own review, never straight onto the reading
        if "reviewed_label" not in form.changed_data:
            return
        label = form.cleaned_data["reviewed_label"]
        if label:
            services.reading_review(reading=obj, label=label, reviewer=request.user)
        else:
            services.reading_review_withdraw(reading=obj, reviewer=request.user)
        obj.refresh_from_db()

    def has_add_permission(self, request):
        return False
