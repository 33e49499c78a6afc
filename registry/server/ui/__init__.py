"""The web console at ``/ui/``: server-rendered pages over the same services and principals as
the API (see ``docs/ui.md``)."""

from registry.server.ui.routes import install

__all__ = ["install"]
