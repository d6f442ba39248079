"""One module per model family; each registers itself with `altcap.models.registry.register_family`."""
