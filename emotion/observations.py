"""Readings as the engagement maths sees them: one builder for the live view and the reports."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from ml.engagement import DEVICE, SERVER, Observation, device_cues

#: the reading columns an observation needs, besides its time
OBSERVATION_FIELDS = ("face_found", "face_source", "cues", "probs", "uncertain")


def observations(
    rows: Iterable[Mapping], *, time_field: str, origin: datetime, emotion: bool
) -> list[Observation]:
    """Reading rows (``values()`` dicts holding ``time_field`` and ``OBSERVATION_FIELDS``) as
    observations timed in seconds from ``origin``. A frame without a face carries no cues, and
    emotion probabilities only where ``emotion`` is on. A frame whose face was found on the
    learner's device (``face_source`` ``"device"``) carries its head pose, gaze and eye
    openness as well; a server frame its face position only. An uncertain reading (the model
    abstained) carries no probabilities: it is counted as uncertain, outside the emotion mix."""
    out = []
    for r in rows:
        face = r["face_found"]
        cues = (r["cues"] or {}) if face else {}
        source = DEVICE if r.get("face_source") == DEVICE else SERVER
        doubt = bool(emotion and face and r.get("uncertain"))
        out.append(
            Observation(
                t=(r[time_field] - origin).total_seconds(),
                face=face,
                center_offset=cues.get("center_offset"),
                area_fraction=cues.get("area_fraction"),
                probs=r["probs"] if (emotion and face and r["probs"] and not doubt) else None,
                uncertain=doubt,
                source=source,
                **(device_cues(cues) if source == DEVICE and face else {}),
            )
        )
    return out
