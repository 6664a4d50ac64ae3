"""Signal receivers: API tokens end with the credential and the sign-out that issued them.

Connected in ``TutoringConfig.ready``. A token is a bearer credential: it must not outlive a
password change (whoever held the old password may hold a token too) nor a sign-out.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from tutoring import services

User = get_user_model()


@receiver(pre_save, sender=User, dispatch_uid="tutoring.password_hash_watch")
def _note_password_hash_change(sender, instance, raw=False, update_fields=None, **kwargs):
    """Compare the stored hash with the one being saved, whatever path changed it: the password
    change and reset forms, the admin, ``changepassword``, ``set_password`` + ``save``."""
    instance._password_hash_changed = False
    if raw or instance._state.adding or (update_fields and "password" not in update_fields):
        return
    old = sender._default_manager.filter(pk=instance.pk).values_list("password", flat=True)
    old = old.first()
    instance._password_hash_changed = old is not None and old != instance.password


@receiver(post_save, sender=User, dispatch_uid="tutoring.password_hash_revokes_tokens")
def _revoke_tokens_on_password_change(sender, instance, raw=False, **kwargs):
    if not raw and getattr(instance, "_password_hash_changed", False):
        instance._password_hash_changed = False
        services.api_token_revoke_all(user=instance)


@receiver(user_logged_out, dispatch_uid="tutoring.sign_out_revokes_tokens")
def _revoke_tokens_on_sign_out(sender, request, user, **kwargs):
    """Signing out of the web session (``/accounts/logout/``, the admin's) revokes every API
    token of the user: "sign out" ends all of that person's access, as users expect of it."""
    if user is not None:
        services.api_token_revoke_all(user=user)
