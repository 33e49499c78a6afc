"""Static model-file scanning: classify every file by content, check it, never deserialize it.

    report = scan_directory(Path("model/"))       # or scan_stream(name, fileobj, size)
    report.unsafe                                   # [FileVerdict…]

Nothing here loads a model: pickles are read opcode by opcode (``pickletools``), safetensors
headers are parsed as bounded JSON, archives are listed and their members streamed, never
extracted. No ``pickle.load``, no torch / keras / tensorflow import (a test enforces it).

Scanners are denylists in disguise and can be bypassed; this one is an allowlist for pickles
(only globals known to appear in ML checkpoints pass) and the release policy quarantines the
pickle family by default even when the scan is clean.
"""

from attest.scan.core import (
    RULESET,
    SCANNER_NAME,
    SCANNER_VERSION,
    FileVerdict,
    Format,
    ScanLimits,
    ScanReport,
    Verdict,
    scan_directory,
    scan_stream,
)

__all__ = [
    "RULESET",
    "SCANNER_NAME",
    "SCANNER_VERSION",
    "FileVerdict",
    "Format",
    "ScanLimits",
    "ScanReport",
    "Verdict",
    "scan_directory",
    "scan_stream",
]
