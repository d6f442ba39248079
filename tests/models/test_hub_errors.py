"""A gated, missing or unreachable hub model gives one clear error, never the hub's 401 traceback."""

from __future__ import annotations

import pytest
import transformers.utils.hub
from huggingface_hub import errors
from huggingface_hub.utils import httpx

from altcap.models.hub_errors import explain_hub_error
from altcap.models.loading import ModelConfig, ModelLoadError, load_model


def _response(status: int, repo: str) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", f"https://huggingface.co/{repo}/resolve/main/x"))


def _refuse_with(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    # hf_hub_download is where transformers meets the hub: it wraps what this raises in an OSError.
    def refuse(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(transformers.utils.hub, "hf_hub_download", refuse)


def test_gated_model_without_token_says_accept_licence_and_log_in(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = "google/gemma-3-4b-it"
    gated = errors.GatedRepoError("401 Client Error: gated repo", response=_response(401, repo))
    _refuse_with(monkeypatch, gated)
    with pytest.raises(ModelLoadError) as caught:
        load_model(ModelConfig(model_id=repo, device="cpu"))
    message = str(caught.value)
    assert "gated" in message and f"https://huggingface.co/{repo}" in message
    assert "huggingface-cli login" in message and "HF_TOKEN" in message
    assert "401" not in message and "Traceback" not in message


def test_missing_or_private_model_names_the_id_and_the_login(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = "someone/no-such-captioner"
    _refuse_with(monkeypatch, errors.RepositoryNotFoundError("404", response=_response(404, repo)))
    with pytest.raises(ModelLoadError, match=r"no such model on the hub, or it is private.*HF_TOKEN"):
        load_model(ModelConfig(model_id=repo, device="cpu"))


def test_offline_machine_says_download_and_pass_the_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    _refuse_with(monkeypatch, errors.LocalEntryNotFoundError("not in cache and offline"))
    with pytest.raises(ModelLoadError, match=r"not in the local hub cache.*hf download"):
        load_model(ModelConfig(model_id="org/offline-model", device="cpu"))


def test_other_errors_are_not_explained_as_hub_refusals() -> None:
    assert explain_hub_error("org/model", OSError("disk full")) is None
    wrapped = OSError("You are trying to access a gated repo.")
    wrapped.__cause__ = errors.GatedRepoError("401", response=_response(401, "org/model"))
    assert "gated" in (explain_hub_error("org/model", wrapped) or "")
