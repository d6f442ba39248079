"""Processors built with and without torchvision, and the image-size limits mapped onto each."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from altcap.models import processors
from altcap.models.processors import (
    ProcessorLoadError,
    apply_pixel_limits,
    load_processor,
    plan_processor_build,
    torchvision_available,
)

WITH_VIDEO = ["image_processor", "tokenizer", "video_processor"]
PIL_AND_TV = {"pil": "Qwen2VLImageProcessorPil", "torchvision": "Qwen2VLImageProcessor"}



def test_plan_uses_auto_processor_whenever_torchvision_imports() -> None:
    assert plan_processor_build(WITH_VIDEO, PIL_AND_TV, has_torchvision=True) == "auto"
    assert plan_processor_build(WITH_VIDEO, {"torchvision": "X"}, has_torchvision=True) == "auto"


def test_plan_without_torchvision_drops_video_or_says_it_is_needed() -> None:
    assert plan_processor_build(WITH_VIDEO, PIL_AND_TV, has_torchvision=False) == "without_video"
    assert plan_processor_build(WITH_VIDEO[:2], PIL_AND_TV, has_torchvision=False) == "auto"
    only_tv = {"torchvision": "Lfm2VlImageProcessor"}
    assert plan_processor_build(WITH_VIDEO[:2], only_tv, has_torchvision=False) == "needs_torchvision"


def test_this_machine_has_no_torchvision() -> None:
    # The without-video path below is the one this machine takes; if torchvision appears here,
    # these tests must be revisited rather than silently test the other path.
    assert torchvision_available() is False


def test_video_processor_left_out_with_one_log_line(chat_dir, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="altcap.models.processors"):
        processor = load_processor(str(chat_dir("qwen2_5_vl")), "qwen2_5_vl")
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert not hasattr(processor, "video_processor")
    assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessorPil"
    assert processor.chat_template
    assert [r.message for r in caplog.records if r.name.startswith("altcap")] == [
        "torchvision missing: qwen2_5_vl processor built without its video processor"
    ]


def test_processor_that_requires_a_video_argument_loads(chat_dir) -> None:
    processor = load_processor(str(chat_dir("smolvlm")), "smolvlm")
    assert type(processor).__name__ == "SmolVLMProcessor"
    assert processor.image_seq_len == 4  # the saved processor_config.json was read


def test_saved_without_video_processor_keeps_the_original_class_name(chat_dir) -> None:
    config = json.loads((chat_dir("qwen2_5_vl") / "processor_config.json").read_text())
    assert config["processor_class"] == "Qwen2_5_VLProcessor"


def test_torchvision_present_path_is_plain_auto_processor(chat_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    """With torchvision "present", a processor without a video part goes through AutoProcessor."""
    monkeypatch.setattr(processors, "torchvision_available", lambda: True)
    processor = load_processor(str(chat_dir("gemma3")), "gemma3")
    assert type(processor).__name__ == "Gemma3Processor"
    assert type(processor).__module__.startswith("transformers.")


def test_folder_saved_without_video_processor_loads_where_torchvision_is(
    chat_dir, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A folder saved where torchvision was missing (a merged run, these tiny models) has no video
    processor: with torchvision present, AutoProcessor would fail on it ("Can't load video
    processor", as it did on the GPU machine); it is built from its parts instead."""
    monkeypatch.setattr(processors, "torchvision_available", lambda: True)

    def auto_processor_fails(*args, **kwargs):
        raise OSError("Can't load video processor")

    monkeypatch.setattr("transformers.AutoProcessor.from_pretrained", auto_processor_fails)
    folder = chat_dir("qwen2_5_vl")
    with caplog.at_level(logging.INFO, logger="altcap.models.processors"):
        processor = load_processor(str(folder), "qwen2_5_vl")
    assert type(processor).__name__ == "Qwen2_5_VLProcessor" and not hasattr(processor, "video_processor")
    assert any("has no video processor" in r.message for r in caplog.records)
    assert processors.folder_lacks_video_processor(str(folder))
    assert not processors.folder_lacks_video_processor("Qwen/Qwen2.5-VL-3B-Instruct")  # a hub id


def test_family_that_needs_torchvision_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(ProcessorLoadError, match=r"needs torchvision.*pip install torchvision") as err:
        load_processor(str(tmp_path), "lfm2_vl")
    assert "lfm2_vl" in str(err.value)


def test_pixel_limits_map_onto_each_processors_own_setting(chat_dir) -> None:
    qwen = load_processor(str(chat_dir("qwen2_5_vl")), "qwen2_5_vl")
    assert apply_pixel_limits(qwen, 40 * 40, 30 * 30) == {
        "size": {"shortest_edge": 900, "longest_edge": 1600}
    }
    assert qwen.image_processor.size["longest_edge"] == 1600
    smol = load_processor(str(chat_dir("smolvlm")), "smolvlm")
    # The longest edge is a whole number of 32 px tiles, never below one tile.
    assert apply_pixel_limits(smol, 100 * 100, None)["size"]["longest_edge"] == 96
    assert apply_pixel_limits(smol, 10 * 10, None)["size"]["longest_edge"] == 32
    internvl = load_processor(str(chat_dir("internvl")), "internvl")
    assert apply_pixel_limits(internvl, 3 * 32 * 32, None) == {"max_patches": 3}
    gemma = load_processor(str(chat_dir("gemma3")), "gemma3")
    gemma.image_processor.do_pan_and_scan = True
    assert apply_pixel_limits(gemma, None, None) == {"do_pan_and_scan": False}
    assert gemma.image_processor.do_pan_and_scan is False
