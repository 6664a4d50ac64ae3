"""Signal receivers: what emotion does when the tutoring domain changes.

Connected in ``EmotionConfig.ready``. Tutoring does not import emotion: it sends signals
(``tutoring.signals``) and the work on readings is done here.
"""

from __future__ import annotations

from django.dispatch import receiver

from emotion.models import Reading
from emotion.services import frames_discard_pending
from tutoring.models import Consent
from tutoring.signals import consent_ended


@receiver(consent_ended, sender=Consent, dispatch_uid="emotion.consent_ended_discards_frames")
def _discard_pending_frames(sender, consent: Consent, **kwargs) -> None:
    """Frames accepted under ``consent`` and still waiting for inference are not analysed
    (``consent_revoked``) and their raw bytes are deleted on commit."""
    frames_discard_pending(readings=Reading.objects.filter(session__consent=consent))
