"""GLM-4.1V / GLM-4V (e.g. zai-org/GLM-4.1V-9B-Thinking): Qwen-style dynamic resolution;
the template closes no turn, so the answer ends with `<|endoftext|>`; thinking blocks are dropped
from captions."""

from altcap.models.chat_vlm import register_chat_vlm
from altcap.models.registry import PackedVisionAttention

# Tower and merger (the projector) are both inside `visual`.
# The tower attends within packed images (`cu_seqlens`): one call per layer, not one per span.
FAMILY = register_chat_vlm(
    "glm4v", vision_parts=("model.visual",), packed_vision_attention=PackedVisionAttention()
)
