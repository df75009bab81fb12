"""PDF fixtures built with fpdf2 at test time (no binaries in the repository)."""

from __future__ import annotations

import zlib

from fpdf import FPDF

BODY = 11
LOREM = (
    "Cognitive behavioural therapy teaches people to notice anxious thoughts and to test them "
    "against evidence, which reduces avoidance and lowers the intensity of later episodes."
)


def _pdf() -> FPDF:
    pdf = FPDF()
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_creator("ragtune tests")
    return pdf


def _line(pdf: FPDF, text: str, size: float) -> None:
    pdf.set_font("Helvetica", size=size)
    pdf.multi_cell(0, size * 0.5, text=text, new_x="LMARGIN", new_y="NEXT")


def _paragraph(pdf: FPDF, text: str) -> None:
    _line(pdf, text, BODY)
    pdf.ln(5)  # a paragraph gap clearly wider than the line spacing


def font_headings_pdf() -> bytes:
    """No outline: a 24 pt title, 16 pt chapters, 13 pt sections, 11 pt body, a running header."""
    pdf = _pdf()
    pdf.set_title("Metadata Title Ignored When The Page Shows One")

    def header() -> None:
        pdf.set_font("Helvetica", size=8)
        pdf.cell(0, 4, text=f"Anxiety Handbook - draft {pdf.page_no()}", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)

    pdf.header = header  # type: ignore[method-assign]
    pdf.add_page()
    _line(pdf, "Understanding Anxiety Disorders", 24)
    _paragraph(pdf, "Prepared for the ragtune test-suite by nobody in particular.")
    _line(pdf, "1 Introduction", 16)
    _paragraph(pdf, "Anxiety disorders are the most common mental disorders. " + LOREM)
    _paragraph(pdf, "A second paragraph of the introduction explains the scope of this handbook.")
    _line(pdf, "1.1 Prevalence", 13)
    _paragraph(pdf, "About one in four adults meets the criteria for an anxiety disorder during their life.")
    pdf.add_page()
    _line(pdf, "2 Treatment", 16)
    _paragraph(pdf, "Treatment combines psychotherapy and medication. " + LOREM)
    _line(pdf, "2.1 Psychotherapy", 13)
    _paragraph(pdf, "Exposure therapy gradually confronts feared situations in a safe setting.")
    pdf.add_page()
    _line(pdf, "2.2 Medication", 13)
    _paragraph(pdf, "Selective serotonin reuptake inhibitors are the usual first choice. " + LOREM)
    return bytes(pdf.output())


def outline_pdf() -> bytes:
    """Bookmarks give the structure; every line uses the body font size, so only the outline can."""
    pdf = _pdf()
    pdf.set_title("Bipolar Disorder: A Clinician's Primer")
    pdf.add_page()
    _paragraph(pdf, "Front matter: this primer is an invented test document.")
    pdf.start_section("Background", level=0)
    _line(pdf, "Background", BODY)
    _paragraph(pdf, "Bipolar disorder causes episodes of depression and episodes of mania. " + LOREM)
    pdf.start_section("Mania", level=1)
    _line(pdf, "Mania", BODY)
    _paragraph(pdf, "Mania brings elevated mood, little need for sleep and racing thoughts.")
    pdf.add_page()
    pdf.start_section("Management", level=0)
    _line(pdf, "Management", BODY)
    _paragraph(pdf, "Mood stabilisers such as lithium reduce relapses. " + LOREM)
    pdf.start_section("Summary", level=0)
    _paragraph(pdf, "Summary: long-term treatment and early warning signs keep most people well.")
    return bytes(pdf.output())


def encrypted_pdf() -> bytes:
    pdf = _pdf()
    pdf.add_page()
    _paragraph(pdf, "Confidential: " + LOREM)
    pdf.set_encryption(owner_password="owner-secret", user_password="user-secret")
    return bytes(pdf.output())


def scanned_pdf() -> bytes:
    """Pages with drawn shapes only, as a scan without OCR would have images only: no text layer."""
    pdf = _pdf()
    for _ in range(2):
        pdf.add_page()
        pdf.set_fill_color(200, 200, 200)
        pdf.rect(20, 20, 170, 250, style="F")
        pdf.line(20, 20, 190, 270)
    return bytes(pdf.output())


def truncated_pdf() -> bytes:
    data = font_headings_pdf()
    return data[: len(data) // 2]


def bomb_pdf(expanded_mb: int = 256) -> bytes:
    """A one-page PDF whose content stream inflates from a few hundred KB to ``expanded_mb`` MB."""
    packer = zlib.compressobj(9)
    block = b"BT /F1 12 Tf 72 720 Td (x) Tj ET\n" * (1024 * 1024 // 34)
    parts = [packer.compress(block) for _ in range(expanded_mb)]
    stream = b"".join(parts) + packer.flush()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
