"""One module per model family; `registry.get_family` imports every module here."""
