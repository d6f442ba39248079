import json
from pathlib import Path

import yaml

from altcap.data.context import DEFAULT_CONTEXT_TEMPLATE
from altcap.infer.config import CaptionConfig
from altcap.infer.trained_prompt import adopt_trained_prompt, find_training_config
from altcap.models.loading import ModelConfig

TRAINED = {"prompt": "Describe this for a blind reader.", "context_template": "Page: {context}\n{prompt}"}


def make_run(root: Path, data: dict) -> Path:
    """A training run folder as `altcap train` leaves it: config.yaml, provenance.json, adapter/."""
    (root / "adapter").mkdir(parents=True)
    (root / "adapter" / "adapter_config.json").write_text("{}", encoding="utf-8")
    (root / "config.yaml").write_text(yaml.safe_dump({"model": {"model_id": "x"}, "data": data}), "utf-8")
    (root / "provenance.json").write_text(json.dumps({}), encoding="utf-8")
    return root / "adapter"


def make_cfg(tmp_path: Path, adapter: Path | None, **fields) -> CaptionConfig:
    model = ModelConfig(model_id="x", adapter=str(adapter) if adapter else None)
    return CaptionConfig(model=model, images=tmp_path, **fields)


def test_an_adapter_captions_with_the_prompt_and_template_it_was_trained_with(tmp_path, capsys) -> None:
    adapter = make_run(tmp_path / "run", TRAINED)
    adopted = adopt_trained_prompt(make_cfg(tmp_path, adapter))
    assert (adopted.prompt, adopted.context_template) == (TRAINED["prompt"], TRAINED["context_template"])
    assert "prompt and context_template the adapter was trained with" in capsys.readouterr().err
    assert adopted.record_settings()["prompt"] == TRAINED["prompt"]  # resume guards see it too


def test_what_the_user_gave_wins(tmp_path) -> None:
    adapter = make_run(tmp_path / "run", TRAINED)
    cfg = make_cfg(tmp_path, adapter, prompt="Mine.", context_template="Mine: {context}\n{prompt}")
    assert adopt_trained_prompt(cfg) is cfg


def test_nothing_changes_without_a_run_folder_or_a_readable_config(tmp_path, capsys) -> None:
    assert adopt_trained_prompt(make_cfg(tmp_path, None)).prompt is None
    loose = tmp_path / "loose_adapter"
    loose.mkdir()
    assert find_training_config(str(loose)) is None
    adapter = make_run(tmp_path / "run", TRAINED)
    (tmp_path / "run" / "config.yaml").write_text("data: [unclosed", encoding="utf-8")
    cfg = make_cfg(tmp_path, adapter)
    assert adopt_trained_prompt(cfg) is cfg
    assert "could not read the prompt the adapter was trained with" in capsys.readouterr().err


def test_a_run_trained_on_the_defaults_changes_nothing(tmp_path) -> None:
    adapter = make_run(tmp_path / "run", {"prompt": None, "context_template": DEFAULT_CONTEXT_TEMPLATE})
    cfg = make_cfg(tmp_path, adapter)
    assert adopt_trained_prompt(cfg) is cfg
