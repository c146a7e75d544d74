"""Hostile files for the ingestion bounds tests: DOCX zip bombs, honest and lying."""

from __future__ import annotations

import io
import struct
import zipfile

DOCUMENT_XML = "word/document.xml"
_NS = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
_PARAGRAPH = b"<w:p><w:r><w:t>The same sentence, again and again.</w:t></w:r></w:p>"
_LOCAL, _CENTRAL = b"PK\x03\x04", b"PK\x01\x02"


def docx_bomb(inflated_mib: int = 295, *, lying: bool = False) -> bytes:
    """A real DOCX whose document.xml inflates to `inflated_mib` MiB (under 1 MB zipped).

    `lying`: its zip headers claim document.xml is 2,000 bytes.
    """
    import docx

    template = io.BytesIO()
    docx.Document().save(template)
    out = io.BytesIO()
    with (
        zipfile.ZipFile(template) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bomb,
    ):
        for info in source.infolist():
            if info.filename != DOCUMENT_XML:
                bomb.writestr(info.filename, source.read(info))
        block = _PARAGRAPH * (1024 * 1024 // len(_PARAGRAPH))
        with bomb.open(DOCUMENT_XML, "w") as member:
            member.write(f"<w:document {_NS}><w:body>".encode())
            for _ in range(inflated_mib):
                member.write(block)
            member.write(b"</w:body></w:document>")
    data = out.getvalue()
    return _claim_size(data, DOCUMENT_XML, 2000) if lying else data


def _claim_size(data: bytes, name: str, size: int) -> bytes:
    """The zip with `name`'s uncompressed size set to `size` in its local and central headers."""
    patched = bytearray(data)
    encoded = name.encode()
    for signature, size_at, name_len_at, name_at in ((_LOCAL, 22, 26, 30), (_CENTRAL, 24, 28, 46)):
        pos = patched.find(signature)
        while pos >= 0:
            (name_len,) = struct.unpack_from("<H", patched, pos + name_len_at)
            if bytes(patched[pos + name_at : pos + name_at + name_len]) == encoded:
                struct.pack_into("<I", patched, pos + size_at, size)
            pos = patched.find(signature, pos + 4)
    return bytes(patched)
