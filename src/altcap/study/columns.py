"""The study export format's columns (schemas shared by the web app's export and the simulator)."""

RESPONSE_COLUMNS = [
    "study_id",
    "participant_id",
    "participant_status",
    "trial_index",
    "trial_kind",
    "image",
    "system",
    "position",
    "item",
    "value",
    "correct",
    "question_id",
    "response_ms",
    "started_at",
    "submitted_at",
    # Appended last (issue #29), like participants' `role`: where the image appears ("" = unknown) and
    # its photo-quality flags from `altcap data check` (";"-joined; "" = none or not checked).
    "context",
    "quality_flags",
]
PARTICIPANT_COLUMNS = [
    "participant_id",
    "status",
    "invited_at",
    "started_at",
    "completed_at",
    "withdrawn_at",
    "withdraw_reason",
    "latin_square_row",
    "completion_code",
    "role",  # appended last (issue #6) so readers that index the older columns keep working
]
