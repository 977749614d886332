"""Text encoding of CSV inputs: a file-level property, checked before any row is read.

A file that is not valid in the configured encoding stops the run with a message naming
the file, the byte offset and the setting, instead of losing its rows one by one to
quarantine. A file in another encoding than UTF-8 is transcoded to UTF-8 into a work
directory on the way in (the caller removes it).
"""

from __future__ import annotations

import codecs
from contextlib import nullcontext
from pathlib import Path

from .errors import InputError

CHUNK_BYTES = 16 * 1024 * 1024
SETTING = "PERSONALIZATION_INPUT_ENCODING"


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


def utf8_csv(path: Path, encoding: str, workdir: Path) -> Path:
    """``path`` itself when ``encoding`` is UTF-8 (every byte checked), else a UTF-8 copy in ``workdir``.

    Raises :class:`InputError` when the bytes are not valid in ``encoding`` (or the encoding
    is unknown).
    """
    try:
        codec = codecs.lookup(encoding)
    except LookupError as exc:
        raise InputError(path, f"unknown encoding {encoding!r} ({SETTING})") from exc
    decoder = codecs.getincrementaldecoder(codec.name)(errors="strict")
    target = path if _is_utf8(encoding) else workdir / f"{path.stem}.utf8{path.suffix}"
    offset = 0
    writer = nullcontext() if target == path else target.open("w", encoding="utf-8", newline="")
    with path.open("rb") as source, writer as sink:
        while True:
            chunk = source.read(CHUNK_BYTES)
            pending = len(decoder.getstate()[0])  # bytes of a character split across chunks
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                hint = "" if not _is_utf8(encoding) else ", e.g. latin-1 or cp1252"
                raise InputError(
                    path,
                    f"not valid {codec.name} at byte {offset - pending + exc.start}: "
                    f"set {SETTING} to the file's encoding{hint}, or convert the file",
                ) from None
            if sink is not None:
                sink.write(text)
            if not chunk:
                return target
            offset += len(chunk)
