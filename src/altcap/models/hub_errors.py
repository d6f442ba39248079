"""Plain-language messages for what the model hub can refuse: gated licences, missing or private
repositories, and offline machines, instead of the 401/404 traceback transformers passes on.

transformers wraps huggingface_hub's errors in an OSError (`raise OSError(...) from err`), so the
cause chain is searched for the hub's own exception types.
"""

from __future__ import annotations

from collections.abc import Iterator

LOGIN_HINT = "log in with `huggingface-cli login` (or `hf auth login`), or set HF_TOKEN to a token of yours"


def iter_causes(err: BaseException) -> Iterator[BaseException]:
    """`err`, then what it was raised from or during, without looping on a cycle."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def explain_hub_error(model_id: str, err: BaseException) -> str | None:
    """What went wrong fetching `model_id` from the hub and how to fix it, or None if `err` is no hub refusal.

    Args:
        model_id: the hub id that was asked for.
        err: the exception `from_pretrained` raised.

    Returns:
        One message naming the model id, the cause and the fix; None for other errors.
    """
    from huggingface_hub import errors

    for cause in iter_causes(err):
        # GatedRepoError is a RepositoryNotFoundError, so it is tested first.
        if isinstance(cause, errors.GatedRepoError):
            return (
                f"model_id={model_id!r} is a gated model: it needs its licence accepted on "
                f"https://huggingface.co/{model_id} with your account, then {LOGIN_HINT}"
            )
        if isinstance(cause, errors.RepositoryNotFoundError):
            return (
                f"model_id={model_id!r}: no such model on the hub, or it is private; check the id, and for a "
                f"private model {LOGIN_HINT}"
            )
        if isinstance(cause, errors.OfflineModeIsEnabled | errors.LocalEntryNotFoundError):
            return (
                f"model_id={model_id!r} is not in the local hub cache and the hub cannot be reached "
                "(offline or HF_HUB_OFFLINE=1); on a connected machine run `hf download ID --local-dir DIR` "
                "and pass DIR"
            )
    return None
