"""CycloneDX 1.6 ML-BOM generation and validation for model versions.

Never imports :mod:`registry`, FastAPI, SQLAlchemy or boto3: an auditor checks a BOM with this
package and :mod:`attest` alone.

- :func:`build_model_bom` turns a :class:`ModelBomInput` into a strictly valid BOM (a JSON object);
- :func:`bom_bytes` is its canonical encoding, the predicate signed under
  :data:`attest.predicates.CYCLONEDX_BOM`;
- :func:`validate_bom` checks any BOM against the strict 1.6 schema;
- :func:`parse_environment` reads a training environment (requirements.txt or CycloneDX JSON).

Every failure is a :class:`BomError` (an :class:`attest.errors.AttestError`).
"""

from typing import TYPE_CHECKING, Any

from sbom.errors import BomError
from sbom.model import (
    BomCode,
    BomDataset,
    BomFile,
    BomModelRef,
    EnvPackage,
    Metric,
    ModelBomInput,
)

if TYPE_CHECKING:
    from sbom.build import bom_bytes, build_model_bom
    from sbom.environment import MAX_ENVIRONMENT_BYTES, parse_environment
    from sbom.validate import CYCLONEDX_SPEC_VERSION, validate_bom

#: Where the rest of the public surface lives, imported on first use: the builder and the
#: strict validator pull in cyclonedx-python-lib and jsonschema (a second of start-up), which a
#: client that only reads an environment file or checks a signed BOM's digests never needs.
_LAZY = {
    "bom_bytes": "sbom.build",
    "build_model_bom": "sbom.build",
    "MAX_ENVIRONMENT_BYTES": "sbom.environment",
    "parse_environment": "sbom.environment",
    "CYCLONEDX_SPEC_VERSION": "sbom.validate",
    "validate_bom": "sbom.validate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sbom' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CYCLONEDX_SPEC_VERSION",
    "MAX_ENVIRONMENT_BYTES",
    "BomCode",
    "BomDataset",
    "BomError",
    "BomFile",
    "BomModelRef",
    "EnvPackage",
    "Metric",
    "ModelBomInput",
    "bom_bytes",
    "build_model_bom",
    "parse_environment",
    "validate_bom",
]
