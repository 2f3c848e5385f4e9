"""Test documents built in memory (no fixtures on disk), shared by the ingestion tests."""

from __future__ import annotations


def make_pdf(pages: list[str], *, title: str | None = None) -> bytes:
    """A small valid PDF with one line of text per page (Helvetica), built by hand."""
    objects: list[bytes] = []
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    font_id = 3 + 2 * len(pages)
    for i, text in enumerate(pages):
        content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
                       f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    info_ref = ""
    if title:
        objects.append(f"<< /Title ({title}) >>".encode())
        info_ref = f" /Info {len(objects)} 0 R"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info_ref} >>\n"
            f"startxref\n{xref}\n%%EOF\n").encode()
    return bytes(out)


def make_damaged_pdf(pages: list[str], *, title: str | None = None) -> bytes:
    """`make_pdf` with every object 9 bytes later than its cross-reference entry says, as a
    careless edit leaves a file: pypdf still reads the text, but logs what it repairs
    ("Ignoring wrong pointing object 2 0 (offset 58)", "Object 2 0 found")."""
    good = make_pdf(pages, title=title)
    shifted = good.replace(b"%PDF-1.4\n", b"%PDF-1.4\n%damaged\n", 1)
    head, _, _ = shifted.rpartition(b"startxref\n")
    return head + b"startxref\n%d\n%%%%EOF\n" % (shifted.rindex(b"\nxref\n") + 1)
