"""Self-critical sequence training: reinforce sampled captions by their CIDEr-D over the others'.

After cross-entropy training a captioner still decodes with a train/test mismatch (it never saw
its own mistakes) and optimises token likelihood, not the consensus with several references that
BLEU and CIDEr-D score. SCST (Rennie et al. 2017) samples captions, scores them with CIDEr-D and
raises the log-probability of those that beat a baseline. The baseline here is the mean reward of
the image's other samples (Luo 2020), which needs no extra greedy decode and gives lower variance.

One family-independent path: samples come from the family's own `generate`, log-probabilities from
the model's logits over the family's own `build_inputs(captions=samples)`, so the prompt template
and label masking are the ones cross-entropy training uses. Decoded samples are re-tokenised for
the log-probabilities: for altcap-mini (SmolLM2's BPE) all 80 of 80 samples checked (16 Flickr8k
images x 5) came back as the sampled tokens; a caption cut at max_new_tokens gains an end token.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from altcap.models.text_inputs import IGNORE_INDEX
from altcap.train.cider_reward import CorpusCiderD, add_length_term, simple_tokenize
from altcap.train.config import ScstConfig
from altcap.train.data import Example, load_rgb
from altcap.train.logs import TRAIN_LOG, read_log_rows
from altcap.train.plots import SCST_CURVES, plot_scst_rewards


def labels_are_shifted(model: Any) -> bool:
    """Causal LMs predict label t from position t-1; encoder-decoder LMs (Flan-T5) at position t."""
    config = getattr(model, "config", None)
    text_config = getattr(config, "text_config", None) or config
    return not getattr(text_config, "is_encoder_decoder", False)


def sequence_log_probs(
    logits: torch.Tensor, labels: torch.Tensor, shifted: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of each row's labelled tokens, and how many tokens that is.

    Args:
        logits: (rows, positions, vocab); BLIP-2 with a causal LM puts its query tokens first, so only
            the last `labels.shape[1]` positions are aligned with the labels.
        labels: (rows, length), IGNORE_INDEX where nothing is predicted.
        shifted: True for causal LMs (see `labels_are_shifted`).

    Returns:
        (log_probs, token_counts), each of shape (rows,).
    """
    logits = logits[:, -labels.shape[1] :]
    if shifted:
        logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != IGNORE_INDEX
    # Only labelled positions go through log-softmax: a full (rows, positions, vocab) fp32 copy is GBs.
    token_log_probs = -F.cross_entropy(logits[mask].float(), labels[mask], reduction="none")
    rows = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(labels)[mask]
    log_probs = torch.zeros(labels.shape[0], device=logits.device).index_add(0, rows, token_log_probs)
    return log_probs, mask.sum(-1)


@contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Dropout off while sampling; every submodule's own mode is restored after (frozen parts stay eval)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for submodule, training in modes:
            submodule.training = training


def self_critical_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Reward minus the mean of the same image's other samples; rewards has shape (images, samples)."""
    samples = rewards.shape[1]
    baseline = (rewards.sum(dim=1, keepdim=True) - rewards) / (samples - 1)
    return rewards - baseline


class ScstLoss(torch.nn.Module):
    """The SCST loss of a batch of images (train mode), or -mean greedy CIDEr-D (eval mode).

    A module, like `CaptionLoss`, so DDP/FSDP wrap one forward that holds the whole computation.
    """

    def __init__(
        self, model: torch.nn.Module, family: Any, processor: Any, reward: CorpusCiderD, settings: ScstConfig
    ):
        super().__init__()
        self.model = model
        self.family = family
        self.processor = processor
        self.reward = reward
        self.settings = settings
        self._reward_sum, self._reward_count, self._words_sum = 0.0, 0, 0

    def forward(
        self, inputs: dict[str, Any], examples: Sequence[Example], images: Sequence[Any]
    ) -> torch.Tensor:
        """Loss to minimise; `inputs` are the family's generation inputs for `images`."""
        references = [e.references for e in examples]
        device = next(self.model.parameters()).device
        if not self.training:
            captions = self._generate(inputs, do_sample=False, num_beams=1)
            rewards = add_length_term(
                self.reward.score_batch(captions, references),
                captions,
                references,
                self.settings.length_reward_weight,
            )
            return -torch.tensor(rewards, device=device).mean()
        k = self.settings.samples
        samples = self._generate(
            inputs,
            do_sample=True,
            num_return_sequences=k,
            top_k=0,
            top_p=1.0,
            temperature=self.settings.temperature,
        )
        if len(samples) != k * len(examples):
            raise RuntimeError(
                f"{self.family.name}.generate returned {len(samples)} captions for "
                f"{len(examples)} images x {k} samples"
            )
        repeated_references = [r for r in references for _ in range(k)]
        scores = self.reward.score_batch(samples, repeated_references)
        self._reward_sum += sum(scores)  # from the host-side list: no device sync for the log
        self._reward_count += len(scores)
        self._words_sum += sum(len(simple_tokenize(sample).split()) for sample in samples)
        weight = self.settings.length_reward_weight
        rewards = torch.tensor(add_length_term(scores, samples, repeated_references, weight), device=device)
        advantages = self_critical_advantages(rewards.view(len(examples), k)).flatten()
        log_probs, token_counts = self._log_probs(inputs, examples, images, samples)
        return -(advantages * log_probs).sum() / token_counts.sum().clamp(min=1)

    def _generate(self, inputs: dict[str, Any], **settings: Any) -> list[str]:
        with torch.no_grad(), eval_mode(self.model):
            return self.family.generate(
                self.model,
                self.processor,
                inputs,
                {"max_new_tokens": self.settings.max_new_tokens, **settings},
            )

    def _log_probs(
        self, inputs: dict[str, Any], examples: Sequence[Example], images: Sequence[Any], samples: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.settings.samples
        device = next(self.model.parameters()).device
        text = self.family.build_inputs(
            self.processor,
            [i for i in images for _ in range(k)],
            [e.prompt for e in examples for _ in range(k)],
            samples,
            with_pixels=False,
        )
        batch = {key: value.to(device) for key, value in text.items()}
        for key, value in inputs.items():  # the image tensors, repeated per sample instead of re-processed
            if key not in batch and isinstance(value, torch.Tensor):
                batch[key] = value.repeat_interleave(k, dim=0)
        shifted = labels_are_shifted(self.model)
        labels = batch["labels"]
        if shifted:  # a causal LM computes its own fp32 loss over every position when given labels
            del batch["labels"]
        logits = self.model(**batch).logits
        return sequence_log_probs(logits, labels, shifted)

    def pop_mean_reward(self) -> dict[str, float]:
        """Mean CIDEr-D and words of the samples since the last call (for the training log)."""
        if not self._reward_count:
            return {}
        means = {
            "sample_cider_d": self._reward_sum / self._reward_count,
            "sample_words": self._words_sum / self._reward_count,
        }
        self._reward_sum, self._reward_count, self._words_sum = 0.0, 0, 0
        return means


def make_scst_collate(family: Any, processor: Any) -> Any:
    """collate(examples) -> generation inputs, the examples (their references) and the RGB images."""

    def collate(examples: list[Example]) -> dict[str, Any]:
        images = [load_rgb(e.image) for e in examples]
        inputs = family.build_inputs(processor, images, [e.prompt for e in examples], None)
        return {"inputs": dict(inputs), "examples": examples, "images": images}

    return collate


def build_scst_loss(
    cfg: Any, plan: Any, model: Any, processor: Any, cache: Any = None
) -> tuple[ScstLoss, Any]:
    """The SCST loss module (idf from every training image's references) and its collate function.

    Args:
        cfg: the training config (its `scst` settings).
        plan: the validated plan (training examples, one per image, and the model family).
        model: the PEFT-wrapped model.
        processor: the model's processor.
        cache: always None: SCST samples from pixels, so validation never plans a feature cache.

    Returns:
        (loss module, collate function).
    """
    assert cache is None, "SCST samples captions from pixels; no feature cache is planned for it"
    reward = CorpusCiderD(e.references for e in plan.train_examples)
    return ScstLoss(model, plan.family, processor, reward, cfg.scst), make_scst_collate(
        plan.family, processor
    )


def compute_scst_loss(loss_module: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """The SCST surrogate loss of one batch (samples, rewards and log-probabilities inside)."""
    return loss_module(batch["inputs"], batch["examples"], batch["images"])


def plot_scst_curves(state: Any, out_dir: Path) -> Path:
    """reward_curves.png: its loss is a policy-gradient surrogate, so the reward is what to look at."""
    return plot_scst_rewards(read_log_rows(out_dir / TRAIN_LOG), out_dir / SCST_CURVES)
