"""A content fingerprint of a data pattern's files, computed when a run is submitted.

The fingerprint is a sha256 over the sorted (name, size in bytes, modification time) of every
file the pattern matches (``tf.io.gfile``: local paths and gs://, where a rewritten object has a
new modification time, like a new generation). It changes when a file is added, removed,
resized or rewritten, without reading the data (stat only: 3,844 YT8M shards are one listing).

The pipeline carries it in the raw-data importer's metadata (lineage starts at the data) and as
a parameter of the preprocessing task (its cache key changes when the files change).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from yt8m import storage

UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    pattern: str
    digest: str  # "sha256:<64 hex digits>", or "unknown (<why>)" when the files were not listed
    files: int
    bytes: int

    @property
    def summary(self) -> str:
        if self.digest.startswith(UNKNOWN):
            return self.digest
        return f"{self.files} files, {self.bytes:,} bytes"

    def to_metadata(self) -> dict:
        """String values only: kfp turns importer metadata into strings anyway."""
        return {"pattern": self.pattern, "fingerprint": self.digest, "summary": self.summary}


def fingerprint_files(pattern: str, what: str = "data") -> Fingerprint:
    """Fingerprint every file ``pattern`` matches (comma-separated patterns allowed); error if none."""
    files = storage.expand_pattern(pattern, what)
    entries, total = [], 0
    for path in files:
        stat = storage.gfile.stat(path)
        entries.append([path, int(stat.length), int(stat.mtime_nsec)])
        total += int(stat.length)
    digest = hashlib.sha256(json.dumps(entries, separators=(",", ":")).encode()).hexdigest()
    return Fingerprint(pattern, f"sha256:{digest}", len(files), total)


def unknown(pattern: str, reason: str) -> Fingerprint:
    """A stand-in when the files may not be listed (a dry run touches no network)."""
    return Fingerprint(pattern, f"{UNKNOWN} ({reason})", 0, 0)

