"""CycloneDX 1.6 ML-BOM generation and validation for artifact versions.

Never imports :mod:`registry`. The generator arrives with the provenance work; this package
currently only pins the spec version the registry will produce.
"""

CYCLONEDX_SPEC_VERSION = "1.6"

__all__ = ["CYCLONEDX_SPEC_VERSION"]
