"""altcap: fine-tune image captioners for blind and low-vision users, and prove the captions help."""

__version__ = "0.1.0"
