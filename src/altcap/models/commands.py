"""`altcap models`: the registered model families and what each can do.

Imports nothing heavy at import time (the CLI starts in about a second); the families, and with
them torch and transformers, load when the command runs.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer


def describe_family(family: Any) -> dict[str, Any]:
    """One family as JSON-ready data: name, model types, transformers class and capabilities.

    Args:
        family: a registered `ModelFamily`.

    Returns:
        {name, model_types, hf_class, capabilities: {feature_cache, graphed_decoding,
        graphed_training, qlora, chat_template, instructions, projector_vision_lora,
        packed_vision_attention}}.
    """
    return {
        "name": family.name,
        "model_types": list(family.model_types),
        "hf_class": family.hf_class,
        "capabilities": {
            "feature_cache": family.feature_cache is not None,
            "graphed_decoding": family.graphed_decoding is not None,
            "graphed_training": family.graphed_training is not None,  # train.cuda_graphs
            "qlora": family.quantized is not None,  # 4-bit loading through the family's own loader
            "chat_template": family.uses_chat_template,
            "instructions": family.follows_instructions,  # the prompt (and a record's context) is read
            "projector_vision_lora": family.part_lora is not None,  # lora.adapt_projector / adapt_vision
            # the tower's packed images/windows in one attention call per layer (model.vision_attention)
            "packed_vision_attention": family.packed_vision_attention is not None,
        },
    }


def list_family_descriptions() -> list[dict[str, Any]]:
    """`describe_family` of every registered family, sorted by name."""
    from altcap.models.registry import get_family, list_families

    return [describe_family(get_family(name)) for name in list_families()]


def models_command(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of objects instead of a table.")
    ] = False,
) -> None:
    """List the model families altcap can fine-tune and caption with."""
    rows = list_family_descriptions()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("family", "model types", "transformers class", "capabilities")
    for row in rows:
        capabilities = ", ".join(name for name, present in row["capabilities"].items() if present) or "-"
        table.add_row(row["name"], ", ".join(row["model_types"]), row["hf_class"], capabilities)
    Console().print(table)
    types = sum(len(row["model_types"]) for row in rows)
    typer.echo(f"{len(rows)} families, {types} model types")
