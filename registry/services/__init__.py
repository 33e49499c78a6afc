"""Business logic as plain classes: constructor injection, no FastAPI imports."""

from registry.services.auth import Action, Principal, Role, TokenService
from registry.services.uploads import UploadService
from registry.services.versions import VersionService

__all__ = ["Action", "Principal", "Role", "TokenService", "UploadService", "VersionService"]
