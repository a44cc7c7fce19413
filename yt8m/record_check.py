"""Bad YT8M records as ONE line for the verbs that read them (train, predict, evaluate).

The fast path stays tf.data: a verb reads with TensorFlow and, only if TensorFlow fails
(``DataLossError`` on a truncated or CRC-damaged file, an ``Assert`` naming a graph node on a
bad record), ``explain`` rescans the files in order with the data contract's pure-Python
checks (``yt8m.validation``: TFRecord framing, then the record) and names the first problem:
reason, file, record index and byte offset, video id where there is one. No message holds
record bytes.

``good_records`` is the other mode (``yt8m predict --on-bad-record skip``): a stream of the
valid records with a list of the skipped ones and why.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import tensorflow as tf

from yt8m import storage, validation

# With no label space given (test data has no labels), labels are not range-checked.
_ANY_CLASS = 1 << 62


class BadDataError(ValueError):
    """Input data that breaks the contract; the message is one line (reason, file, record, video)."""


@dataclasses.dataclass(frozen=True)
class Problem:
    reason: str
    detail: str
    path: str
    record: int | None = None  # index of the record in its file
    offset: int | None = None  # byte offset of the record (or of the unreadable range)
    video_id: str = ""

    def line(self) -> str:
        where = [f"file {self.path}"]
        if self.record is not None:
            where.append(f"record {self.record}")
        if self.offset is not None:
            where.append(f"byte {self.offset:,}")
        if self.video_id:
            where.append(f"video {self.video_id!r}")
        return f"bad YT8M data: {self.reason}: {self.detail} ({', '.join(where)})"


def _check_video_level(data: bytes, num_classes: int, path: str) -> str:
    try:
        example = tf.train.Example.FromString(data)
    except Exception:  # noqa: BLE001 - protobuf decode errors
        raise validation.InvalidRecord(validation.UNPARSABLE, "not a tf.train.Example", source=path) from None
    feature = example.features.feature
    ids = feature["id"].bytes_list.value if "id" in feature else []
    if len(ids) != 1 or not ids[0]:
        raise validation.InvalidRecord(validation.MISSING_ID, "feature 'id' must hold one non-empty bytes value",
                                       source=path)
    video_id = ids[0].decode("utf-8", errors="replace")
    labels = list(feature["labels"].int64_list.value) if "labels" in feature else []
    bad = [l for l in labels if not 0 <= l < num_classes]
    if bad:
        raise validation.InvalidRecord(validation.LABEL_OUT_OF_RANGE, f"labels {bad[:5]} outside [0, {num_classes})",
                                       video_id, path)
    return video_id


def scan(files: Sequence[str], num_classes: int | None = None, level: str = "frame"
         ) -> Iterator[tuple[str, int, validation.ScannedRecord | None, Problem | None]]:
    """(path, record index, record, problem) for every record and unreadable range of ``files``, in order.

    A valid record comes with a ``Problem`` whose ``reason`` is empty (it carries the video id)."""
    classes = num_classes or _ANY_CLASS
    for path in files:
        size = storage.gfile.stat(path).length
        with storage.gfile.GFile(path, "rb") as f:
            for index, item in enumerate(validation.scan_tfrecord(f, size)):
                if isinstance(item, validation.Unreadable):
                    yield path, index, None, Problem(item.reason, item.detail, path, offset=item.offset)
                    continue
                if not item.crc_ok:
                    yield path, index, item, Problem(validation.CRC_MISMATCH, "the record fails its data checksum",
                                                     path, index, item.offset)
                    continue
                try:
                    if level == "frame":
                        video_id = validation.parse_frame_level(item.data, classes, source=path).video_id
                    else:
                        video_id = _check_video_level(item.data, classes, path)
                except validation.InvalidRecord as exc:
                    yield path, index, item, Problem(exc.reason, exc.detail, path, index, item.offset, exc.video_id)
                    continue
                yield path, index, item, Problem("", "", path, index, item.offset, video_id)


def first_problem(files: Sequence[str], num_classes: int | None = None, level: str = "frame") -> Problem | None:
    for _path, _index, _record, problem in scan(files, num_classes, level):
        if problem.reason:
            return problem
    return None


def _first_line(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    line = str(message).strip().splitlines()[0] if str(message).strip() else type(exc).__name__
    return line[:200]


def explain(exc: BaseException, files: Sequence[str], num_classes: int | None = None, level: str = "frame",
            what: str = "data") -> BadDataError:
    """A one-line ``BadDataError`` for a failure TensorFlow raised while reading ``files``."""
    problem = first_problem(files, num_classes, level)
    if problem is not None:
        return BadDataError(f"{what}: {problem.line()}")
    return BadDataError(f"{what}: TensorFlow could not read the records ({type(exc).__name__}: {_first_line(exc)})")


def check_not_empty(files: Sequence[str], what: str = "data") -> None:
    """An empty file reads as zero records without any error from TensorFlow: name it. (Local files
    only: on gs:// a stat per object would cost a request each; the rescan after a failure still
    reports empty objects.)"""
    for path in files:
        if not storage.is_url(path) and storage.gfile.stat(path).length == 0:
            raise BadDataError(f"{what}: " + Problem(validation.EMPTY_FILE, "the file is empty", path, offset=0).line())


@dataclasses.dataclass
class Skipped:
    problems: list[Problem] = dataclasses.field(default_factory=list)

    def write_csv(self, path: str) -> None:
        lines = ["file,record,byte_offset,video_id,reason,detail"]
        for p in self.problems:
            detail = p.detail.replace('"', "'")
            lines.append(f'{p.path},{"" if p.record is None else p.record},{"" if p.offset is None else p.offset},'
                         f'{p.video_id},{p.reason},"{detail}"')
        storage.write_text(path, "\n".join(lines) + "\n")


def good_records(files: Sequence[str], skipped: Skipped, num_classes: int | None = None,
                 level: str = "frame") -> Iterator[bytes]:
    """The valid serialized records of ``files`` in order; every bad record or range goes to ``skipped``,
    and so does a later copy of a video id already yielded (a submission lists each video once)."""
    first_seen: dict[str, tuple[str, int]] = {}
    for path, index, record, problem in scan(files, num_classes, level):
        if problem.reason:
            skipped.problems.append(problem)
        elif problem.video_id in first_seen:
            first_path, first_index = first_seen[problem.video_id]
            skipped.problems.append(dataclasses.replace(
                problem, reason=validation.DUPLICATE_VIDEO_ID,
                detail=f"the same id as record {first_index} of {first_path}"))
        else:
            first_seen[problem.video_id] = (path, index)
            yield record.data
