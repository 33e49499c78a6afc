"""Business logic as plain classes: constructor injection, no FastAPI imports."""

from registry.server.services.auth import Action, Principal, Role, TokenService
from registry.server.services.uploads import UploadService
from registry.server.services.versions import VersionService

__all__ = ["Action", "Principal", "Role", "TokenService", "UploadService", "VersionService"]
