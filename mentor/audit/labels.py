"""Readable names for index columns on the audit page and in its flags."""

from __future__ import annotations

PERCEIVED = ("Perceived attributes (skin tone, age group, gender) are perceived, automatic estimates made by "
             "models from images. They are not identities, not self-reported, and can be wrong; use them only to "
             "look at the dataset's balance, never to label a person.")

LABELS = {
    "attr.skin_tone_group": "perceived skin tone group (from ITA)",
    "attr.skin_tone_monk": "perceived Monk Skin Tone step",
    "attr.skin_tone_ita": "perceived skin tone ITA (degrees)",
    "attr.perceived_age": "perceived age group",
    "attr.perceived_gender": "perceived gender",
    "attr.body_visibility": "body visibility",
    "score.filter.body_visibility": "body visibility",
    "score.filter.yaw_deg": "head yaw (degrees)",
    "score.filter.pitch_deg": "head pitch (degrees)",
    "score.asr.language": "spoken language (ASR)",
    "attr.language": "spoken language",
    "duration": "clip duration (s)",
}


def label(col: str) -> str:
    if col in LABELS:
        return LABELS[col]
    if col.startswith("attr."):
        return "perceived " + col[5:].replace("_", " ")
    return col
