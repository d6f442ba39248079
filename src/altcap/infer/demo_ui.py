"""`altcap demo-ui`: a Gradio page that captions an uploaded image with the base and the fine-tuned model
side by side, and reads either caption aloud with the browser's own speech synthesis on request.

Gradio and torch are imported inside functions only, so importing this module (as `altcap --help`
does, to register the command) stays fast. Both models are loaded once, before the page is served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import Field, model_validator

from altcap.cli_options import ConfigPath, SetOptions, error_console, fail, resolve_config
from altcap.config import StageConfig
from altcap.infer.config import GenerationConfig
from altcap.models.loading import ModelConfig

if TYPE_CHECKING:  # annotations only: importing these at load time would slow every `altcap` command
    import gradio as gr


MACHINE_NOTE = (
    "Captions on this page are **machine generated** by an image-captioning model, not written by a "
    "person. They can be wrong or leave out details that matter to you."
)
NO_ADAPTER_NOTE = "No fine-tuned adapter was given (`--adapter`), so only the base model's caption is shown."
LIVE_REGION_ID = "altcap-live"

# The browser speaks, not the server: no audio is generated or sent, and it works offline.
# `cancel()` first, so a second press restarts instead of queueing behind the first reading.
SPEAK_JS = f"""(text) => {{
  const live = document.getElementById("{LIVE_REGION_ID}"), speech = window.speechSynthesis;
  if (!speech) live.textContent = "This browser cannot read aloud; read the caption box instead.";
  else if (!text) live.textContent = "There is no caption to read yet; upload an image first.";
  else {{ speech.cancel(); speech.speak(new SpeechSynthesisUtterance(text)); }}
  return [];
}}"""
STOP_JS = "() => { if ('speechSynthesis' in window) window.speechSynthesis.cancel(); return []; }"
# A live region announces changes to an element that already exists; a freshly re-rendered one is
# often not announced, so the region is static and only its text is replaced.
ANNOUNCE_JS = (
    f'(status) => {{ document.getElementById("{LIVE_REGION_ID}").textContent = status || ""; return []; }}'
)
VISUALLY_HIDDEN_CSS = (
    f"#{LIVE_REGION_ID} {{ position: absolute; width: 1px; height: 1px; overflow: hidden; "
    "clip: rect(0 0 0 0); white-space: nowrap; }"
)
BUTTON_CSS = "button { padding: 0.5em 1em; margin: 0.25em 0; font-size: 1rem; cursor: pointer; }"


class DemoUIConfig(StageConfig):
    """Everything `altcap demo-ui` needs: the base model, the fine-tuned adapter, decoding, the server."""

    model: ModelConfig = Field(
        default_factory=ModelConfig,
        description="Base model (its `adapter` must stay empty: the fine-tuned model is `adapter`).",
    )
    adapter: Path | None = Field(
        default=None,
        description="LoRA adapter folder from `altcap train`; the fine-tuned model is the base plus "
        "it. None = show only the base model.",
    )
    generation: GenerationConfig = Field(default_factory=GenerationConfig, description="Decoding.")
    prompt: str | None = Field(default=None, description="Instruction for both; None = default.")
    host: str = Field(default="127.0.0.1", description="Address to serve on (0.0.0.0 = network).")
    port: int = Field(default=7860, ge=1, le=65535, description="TCP port to serve on.")
    share: bool = Field(default=False, description="Ask Gradio for a public share link (needs internet).")

    @model_validator(mode="after")
    def _check_adapter_field(self) -> DemoUIConfig:
        if self.model.adapter is not None:
            raise ValueError(
                f"model.adapter={self.model.adapter!r}: the demo loads the base model without an "
                "adapter; pass the adapter as `adapter` (--adapter) instead"
            )
        return self


class DemoUIError(ValueError):
    """Bad input for the demo (an upload that is not an image); the message says what to do."""


@dataclass
class LoadedModel:
    """A model ready to caption, as `load_model` returns it, plus what the page says about it."""

    model: Any
    processor: Any
    family: Any
    label: str


@dataclass
class DemoModels:
    """The base and (optionally) fine-tuned captioners and the decoding settings they share."""

    base: LoadedModel
    tuned: LoadedModel | None
    prompt: str | None = None
    generate_kwargs: dict[str, Any] = field(default_factory=dict)


def load_demo_models(cfg: DemoUIConfig) -> DemoModels:
    """Load the base model and, when `cfg.adapter` is set, base + adapter, checking the adapter first.

    Args:
        cfg: the demo config.

    Returns:
        Both captioners, ready for `describe_image`.

    Raises:
        ModelLoadError: a bad model id or adapter folder, raised before any weights are loaded.
    """
    from altcap.models.loading import check_adapter_folder, load_model

    adapter = str(cfg.adapter) if cfg.adapter is not None else None
    if adapter is not None:
        check_adapter_folder(adapter)
    with error_console.status(f"loading base model {cfg.model.model_id} ..."):
        base = LoadedModel(*load_model(cfg.model), label=cfg.model.model_id)
    tuned = None
    if adapter is not None:
        # A second copy: PEFT injects LoRA layers into the model it wraps, so sharing one would change base.
        with error_console.status(f"loading fine-tuned model (adapter {adapter}) ..."):
            tuned_cfg = cfg.model.model_copy(update={"adapter": adapter})
            tuned = LoadedModel(*load_model(tuned_cfg), label=f"{cfg.model.model_id} + {adapter}")
    return DemoModels(base, tuned, cfg.prompt, cfg.generation.generate_kwargs())


def caption_with(loaded: LoadedModel, image: Any, prompt: str | None, generate_kwargs: dict[str, Any]) -> str:
    """One caption for one RGB PIL image, the same way `altcap caption` makes them.

    Args:
        loaded: the captioner.
        image: an RGB PIL image.
        prompt: the instruction; None = the family default.
        generate_kwargs: `model.generate` keyword arguments.

    Returns:
        The caption, stripped.
    """
    import torch

    from altcap.models.text_inputs import move_to_device

    inputs = loaded.family.build_inputs(loaded.processor, [image], [prompt])
    inputs = move_to_device(inputs, loaded.model.device, loaded.model.dtype)
    with torch.inference_mode():
        captions = loaded.family.generate(loaded.model, loaded.processor, inputs, generate_kwargs)
    return captions[0].strip()


def read_upload(upload: Any) -> Any:
    """An RGB PIL image from what the page sends (Gradio's file payload), a path, or a PIL image.

    Raises:
        DemoUIError: nothing uploaded, or a file that is not a readable image.
    """
    from PIL import Image

    from altcap.data.images import ImageLoadError, convert_to_rgb, load_image_rgb

    if upload is None:
        raise DemoUIError("No image yet: upload a photo (JPEG, PNG or WebP), then press Describe image.")
    if isinstance(upload, Image.Image):
        return convert_to_rgb(upload)
    path, name = upload, upload
    if isinstance(upload, dict):
        path, name = upload.get("path"), upload.get("orig_name") or Path(str(upload.get("path"))).name
    try:
        return load_image_rgb(Path(str(path)))
    except ImageLoadError as err:
        reason = err.__cause__ or "file not found"
        raise DemoUIError(
            f"{Path(str(name)).name!r} is not an image this page can read ({reason}); "
            "upload a JPEG, PNG or WebP photo instead."
        ) from err


def describe_image(models: DemoModels, upload: Any) -> tuple[str, str, str]:
    """What the page's Describe button runs: both captions and a status line for the live region.

    Args:
        models: from `load_demo_models`.
        upload: Gradio's file payload (dict with `path`, `orig_name`), a path, a PIL image, or None.

    Returns:
        (base caption, fine-tuned caption or "" without an adapter, status). A bad upload gives two
        empty captions and the error as status, so old captions never sit beside a new image.
    """
    try:
        image = read_upload(upload)
    except DemoUIError as err:
        return "", "", f"Error: {err}"
    base = caption_with(models.base, image, models.prompt, models.generate_kwargs)
    if models.tuned is None:
        return base, "", "Base model caption ready."
    tuned = caption_with(models.tuned, image, models.prompt, models.generate_kwargs)
    return base, tuned, "Captions ready: base model and fine-tuned model."


def add_read_aloud_buttons(caption_box: gr.Textbox, which: str) -> None:
    """A 'Read aloud' and a 'Stop' button under `caption_box`, speaking in the browser on request."""
    import gradio as gr

    # gr.Button cannot carry an aria-label, so these are plain <button>s in an HTML block.
    with gr.Row():
        read = gr.HTML(
            html_template=f'<button type="button" aria-label="Read the {which} caption aloud">'
            f"Read {which} caption aloud</button>",
            css_template=BUTTON_CSS,
            scale=2,
        )
        stop = gr.HTML(
            html_template='<button type="button" aria-label="Stop reading aloud">Stop reading</button>',
            css_template=BUTTON_CSS,
            scale=1,
        )
    read.click(fn=None, inputs=[caption_box], js=SPEAK_JS)
    stop.click(fn=None, js=STOP_JS)


def add_caption_column(heading: str, which: str, visible: bool) -> gr.Textbox:
    """A column with a labelled, read-only caption box and its read-aloud buttons."""
    import gradio as gr

    with gr.Column(visible=visible):
        gr.Markdown(f"### {heading}")
        # Editable, because Gradio disables a read-only textarea, and a disabled one is skipped by Tab
        # and announced as unavailable. No copy button: in Gradio 6.31 it unlinks the <label>.
        box = gr.Textbox(label=f"{which.capitalize()} caption", lines=3, interactive=True)
        add_read_aloud_buttons(box, which)
    return box


def build_demo(cfg: DemoUIConfig, models: DemoModels | None = None) -> gr.Blocks:
    """The demo page (not yet launched).

    Args:
        cfg: the demo config.
        models: already loaded captioners (tests reuse them); None = load them from `cfg`.

    Returns:
        A `gr.Blocks` app; `.launch()` serves it.
    """
    import gradio as gr

    models = models if models is not None else load_demo_models(cfg)
    with gr.Blocks(title="altcap: describe an image", analytics_enabled=False) as demo:
        gr.Markdown("# Describe an image\n\n" + MACHINE_NOTE)
        tuned_line = f"Fine-tuned model: `{models.tuned.label}`." if models.tuned else NO_ADAPTER_NOTE
        gr.Markdown(
            f"Base model: `{models.base.label}`. {tuned_line} You can edit a caption box before "
            "having it read aloud."
        )
        image = gr.Image(
            label="Image to describe (upload a photo)", type="filepath", sources=["upload", "clipboard"]
        )
        describe = gr.Button("Describe image", variant="primary")
        with gr.Row():
            base_box = add_caption_column("Base model", "base model", visible=True)
            tuned_box = add_caption_column(
                "Fine-tuned model", "fine-tuned model", visible=models.tuned is not None
            )
        status = gr.Textbox(label="Status", interactive=False, value="Upload an image to get captions.")
        gr.HTML(
            html_template=f'<div id="{LIVE_REGION_ID}" role="status" aria-live="polite"></div>',
            css_template=VISUALLY_HIDDEN_CSS,
            js_on_load=None,
        )
        for trigger, api_name in ((describe.click, "describe"), (image.upload, "describe_on_upload")):
            # preprocess=False: Gradio's own preprocessing fails on a non-image with a generic error;
            # `read_upload` names the file and says what to upload instead.
            trigger(
                fn=lambda upload: describe_image(models, upload),
                inputs=[image],
                outputs=[base_box, tuned_box, status],
                preprocess=False,
                api_name=api_name,
            ).then(fn=None, inputs=[status], js=ANNOUNCE_JS)
    return demo


def run_demo_ui(cfg: DemoUIConfig, block: bool = True) -> gr.Blocks:
    """Load both models, build the page and serve it on `cfg.host:cfg.port`.

    Args:
        cfg: the demo config.
        block: wait until the server stops (Ctrl+C); False returns at once (tests close it).

    Returns:
        The running app.
    """
    return launch_demo(build_demo(cfg), cfg, block)


def launch_demo(demo: gr.Blocks, cfg: DemoUIConfig, block: bool = True) -> gr.Blocks:
    """Serve `demo` (from `build_demo`) with the demo theme on `cfg`'s host and port; returns it.

    `block=False` returns at once, serving on a thread (call `demo.close()` later).
    """
    import gradio as gr

    # Gradio's default primary button (white on orange-500, about 2.8:1) fails WCAG AA contrast;
    # blue-700 gives about 6.7:1.
    theme = gr.themes.Default(primary_hue="blue").set(
        button_primary_background_fill="*primary_700",
        button_primary_background_fill_hover="*primary_800",
    )
    demo.queue(default_concurrency_limit=1)  # one generate at a time: two models already fill memory
    demo.launch(
        server_name=cfg.host,
        server_port=cfg.port,
        share=cfg.share,
        prevent_thread_lock=not block,
        quiet=not block,
        ssr_mode=False,
        footer_links=[],  # the default footer links fail contrast and are not needed here
        theme=theme,
    )
    return demo


# Each flag sets exactly one DemoUIConfig field (a test keeps this map and the fields in sync).
FLAG_FIELDS = {
    "model_id": "model.model_id",
    "family": "model.family",
    "dtype": "model.dtype",
    "device": "model.device",
    "adapter": "adapter",
    "prompt": "prompt",
    "num_beams": "generation.num_beams",
    "max_new_tokens": "generation.max_new_tokens",
    "host": "host",
    "port": "port",
    "share": "share",
}


def demo_ui_command(
    config: ConfigPath = None,
    model_id: Annotated[str | None, typer.Option(help="Hub id or folder of the base model.")] = None,
    family: Annotated[str | None, typer.Option(help="Model family; default: inferred.")] = None,
    dtype: Annotated[str | None, typer.Option(help="bfloat16 | float16 | float32.")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N.")] = None,
    adapter: Annotated[
        Path | None, typer.Option(help="LoRA adapter folder from `altcap train` (the fine-tuned model).")
    ] = None,
    prompt: Annotated[str | None, typer.Option(help="Instruction for both models.")] = None,
    num_beams: Annotated[int | None, typer.Option(help="Beam width.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Most new tokens per caption.")] = None,
    host: Annotated[str | None, typer.Option(help="Address to serve on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to serve on (default 7860).")] = None,
    share: Annotated[bool | None, typer.Option("--share/--no-share", help="Public Gradio link.")] = None,
    set_: SetOptions = None,
) -> None:
    """Serve a page that captions an uploaded image with the base and fine-tuned models, side by side."""
    from altcap.models.loading import ModelLoadError

    given = locals()
    flags = {field_name: given[name] for name, field_name in FLAG_FIELDS.items()}
    cfg = resolve_config(DemoUIConfig, config, flags, set_)
    try:
        import gradio  # noqa: F401  (checked here so a missing extra is one clear line, not a traceback)
    except ImportError as err:
        raise fail("gradio is not installed; install the demo extra: pip install 'altcap[demo]'") from err
    try:
        run_demo_ui(cfg)
    except ModelLoadError as err:
        raise fail(str(err)) from err
    except OSError as err:  # Gradio raises OSError when the port is taken
        raise fail(
            f"port={cfg.port}: cannot serve on {cfg.host}:{cfg.port} ({err}); pass another --port"
        ) from err
