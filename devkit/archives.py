"""ZIP archives built in memory for tests and benchmarks."""

from __future__ import annotations

import io
import zipfile


def stored_zip(members: dict[str, bytes]) -> bytes:
    """Members stored as they are: no compression ratio to trip the zip-bomb rule, only what they hold."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()
