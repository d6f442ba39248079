"""altcap's speed and memory benchmarks, one entry point each: `python -m benchmarks.<name> --help`.

Run them from the repository root (with `PYTHONPATH=src` where altcap is not installed). Each
writes a JSON report under `benchmarks/results/` (or `--out`) recording the hardware, the package
versions, the settings and every repetition; docs/benchmarks.md cites the files it reports.
`benchmarks/gpu/*.sh` wrap them for the lent GPU machine.
"""

# Modules with a `main`, run as `python -m benchmarks.<name>`.
ENTRY_POINTS = (
    "caption_throughput",
    "chat_vlm_caption",
    "chat_vlm_train",
    "data_check",
    "decode_attention",
    "evaluate_speed",
    "patch_embed_speed",
    "plot_train_throughput",
    "profile_gpu",
    "random_archs",
    "recipe_memory",
    "startup",
    "study_load",
    "train_collate",
    "tower_ops_speed",
    "train_throughput",
)
# Parts the entry points share: `common` for every benchmark, the rest for one or two of them.
HELPERS = (
    "caption_sweep",
    "chat_archs",
    "chat_bench",
    "chat_configs",
    "chat_data",
    "chat_hf",
    "chat_ties",
    "chat_vlm_trl",
    "common",
    "gpu_probe",
    "phase_timer",
    "profile_setup",
    "profile_summary",
    "train_altcap",
    "train_baselines",
    "train_flops",
    "train_manifests",
)
