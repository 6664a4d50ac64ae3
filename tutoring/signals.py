"""Signals the tutoring domain sends, for the apps built on it (tutoring imports none of them)."""

from __future__ import annotations

from django.dispatch import Signal

consent_ended = Signal()
"""Sent when a consent stops being the learner's active one: revoked (``consent_revoke``) or
superseded by a different grant (``consent_grant``), as ``send(sender=Consent, consent=…)``.

Receivers may rely on this:

- ``consent`` is saved with ``revoked_at`` set; its row and the learner's enrollment in the
  course are locked (``select_for_update``) until the transaction ends.
- It is sent inside the consent change's transaction, synchronously, after the learner's open
  sessions in the course were ended (through ``session_end``, each under its row lock): an
  upload in progress under the consent has committed its readings, and no session takes a
  frame under it any more. A receiver's writes commit or roll back with the change; work that
  must wait for the commit (deleting bytes elsewhere, broadcasts) goes in
  ``transaction.on_commit``.
- ``send``, not ``send_robust``: an exception in a receiver undoes the whole change.
- Not sent when ``consent_grant`` returns the active consent unchanged (the same grant again),
  nor for the consents an enrollment delete or an erasure revokes (``records.services``
  settles those readings itself).
"""
