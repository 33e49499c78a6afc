"""modelseal registry: the service, its storage and metadata, and its clients."""

__version__ = "0.1.0"
