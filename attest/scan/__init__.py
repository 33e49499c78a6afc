"""Static model-file scanning: a file is clean only when it is positively known to carry no code.

    report = scan_directory(Path("model/"))       # or scan_stream(name, fileobj, size)
    report.not_clean                                # [FileVerdict…]

Every file is read in every way a loader could read it (:mod:`attest.scan.readings`): a pickle
reading from its first byte whatever that byte is (:mod:`attest.scan.pickles`), each container
and codec (:mod:`attest.scan.containers`), each format with a header (:mod:`attest.scan.formats`)
and the protobuf formats (:mod:`attest.scan.protobuf`). The most dangerous reading decides:

- ``clean``: fully parsed as a format that cannot carry code, and that format's checks passed;
- ``unsafe``: code-capable content (pickle globals outside the allowlist, Keras Lambda layers or
  foreign modules, ONNX external data escaping the version, archive escapes, …);
- ``unknown``: not positively identified;
- ``unscannable``: malformed, or a limit (size, ratio, nesting, opcode count) stopped the scan.

Nothing here loads a model: pickles are walked opcode by opcode, headers are parsed with bounds,
archives are read member by member, never extracted. No ``pickle.load``, no torch / keras /
tensorflow import (a test enforces it). Pickles are checked against an allowlist of globals,
and the release policy quarantines the pickle family by default even when the scan is clean.
"""

from attest.scan.core import (
    MIN_RULESET,
    RULESET,
    SCANNER_NAME,
    SCANNER_VERSION,
    FileVerdict,
    Format,
    ScanLimits,
    ScanReport,
    ScanVerdict,
    scan_directory,
    scan_files,
    scan_stream,
)

__all__ = [
    "MIN_RULESET",
    "RULESET",
    "SCANNER_NAME",
    "SCANNER_VERSION",
    "FileVerdict",
    "Format",
    "ScanLimits",
    "ScanReport",
    "ScanVerdict",
    "scan_directory",
    "scan_files",
    "scan_stream",
]
