"""PDF building blocks (reportlab): fonts, fast text wrapping, numbered pages, the task table.

Everything here is synchronous and CPU-bound: the worker calls it through ``asyncio.to_thread``.

Speed matters (10,000 rows in well under 8 s): reportlab's Paragraph cells and one big splitting
Table are 5-10x too slow, so long text is pre-wrapped into plain multi-line strings with cached word
widths, rows go into tables of CHUNK_ROWS that stack seamlessly, and the column header is drawn by
the page template on every page (the repeated header) instead of being re-split with the rows.
"""
from __future__ import annotations

import functools
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Callable, Sequence

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (BaseDocTemplate, Flowable, Frame, NextPageTemplate, PageTemplate, Paragraph,
                                Table, TableStyle)

# A TrueType font with wide Unicode coverage, so titles in any script print; Vera ships with reportlab.
FONT_CANDIDATES = (
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
)
MARGIN = 28.0
CELL_FONT_SIZE = 7.5
CELL_LEADING = 9.0
CELL_PADDING = 3.0
CHUNK_ROWS = 100
TITLE_MAX_CHARS = 200
TAGS_MAX_CHARS = 200
DESCRIPTION_MAX_CHARS = 240  # the PDF is for reading; the CSV export carries the full text
GRID = colors.HexColor("#c8ccd2")
HEADER_FILL = colors.HexColor("#e8ebf0")
STRIPE_FILL = colors.HexColor("#f6f7f9")
TASK_COLUMNS = (("ID", 40), ("Title", 190), ("Status", 62), ("Priority", 50), ("Due (UTC)", 78),
                ("Tags", 110), ("Description", 256))


@functools.cache
def fonts() -> tuple[str, str]:
    """(regular, bold) font names, registered once per process."""
    import reportlab

    vera = Path(reportlab.__file__).parent / "fonts"
    for regular, bold in (*FONT_CANDIDATES, (str(vera / "Vera.ttf"), str(vera / "VeraBd.ttf"))):
        if Path(regular).is_file() and Path(bold).is_file():
            pdfmetrics.registerFont(TTFont("TaskdeckSans", regular))
            pdfmetrics.registerFont(TTFont("TaskdeckSans-Bold", bold))
            return "TaskdeckSans", "TaskdeckSans-Bold"
    return "Helvetica", "Helvetica-Bold"  # pragma: no cover - reportlab always ships Vera


class Wrapper:
    """Greedy word wrapping with cached word widths (task text repeats words a lot)."""

    def __init__(self, font: str, size: float) -> None:
        self.font, self.size = font, size
        self._widths: dict[str, float] = {}
        self.space = self.width(" ")

    def width(self, text: str) -> float:
        width = self._widths.get(text)
        if width is None:
            width = self._widths[text] = pdfmetrics.stringWidth(text, self.font, self.size)
        return width

    def wrap(self, text: str, max_width: float, max_chars: int | None = None) -> str:
        """``text`` as lines no wider than ``max_width`` points, joined by newlines (Table draws each line)."""
        if max_chars is not None and len(text) > max_chars:
            text = text[:max_chars].rstrip() + "…"
        lines: list[str] = []
        for paragraph in text.splitlines() or [""]:
            line, line_width = "", 0.0
            for word in paragraph.split():
                for piece in self._pieces(word, max_width):
                    width = self.width(piece)
                    if line and line_width + self.space + width <= max_width:
                        line, line_width = f"{line} {piece}", line_width + self.space + width
                    else:
                        if line:
                            lines.append(line)
                        line, line_width = piece, width
            lines.append(line)
        return "\n".join(lines).strip("\n")

    def _pieces(self, word: str, max_width: float) -> list[str]:
        """A word wider than the column (a URL, say) is cut into pieces that fit."""
        if self.width(word) <= max_width:
            return [word]
        pieces, current = [], ""
        for char in word:
            if current and pdfmetrics.stringWidth(current + char, self.font, self.size) > max_width:
                pieces.append(current)
                current = ""
            current += char
        return pieces + [current]


class NumberedCanvas(Canvas):
    """Defers each page until the end so the footer can say "Page N of M"."""

    footer_text = "Taskdeck"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pages: list[dict[str, Any]] = []

    def showPage(self) -> None:  # noqa: N802 - reportlab's name
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._pages)
        for state in self._pages:
            self.__dict__.update(state)
            self.setFont(fonts()[0], 7)
            self.setFillColor(colors.grey)
            width = self._pagesize[0]
            self.drawString(MARGIN, MARGIN / 2, self.footer_text)
            self.drawRightString(width - MARGIN, MARGIN / 2, f"Page {self._pageNumber} of {total}")
            super().showPage()
        super().save()


def canvas_maker(footer: str) -> type[NumberedCanvas]:
    return type("FooterCanvas", (NumberedCanvas,), {"footer_text": footer})


class ProgressMark(Flowable):
    """Zero-size: when the layout reaches it, ``done`` of ``total`` rows have been placed on pages."""

    def __init__(self, callback: Callable[[float], None], fraction: float) -> None:
        super().__init__()
        self.callback, self.fraction = callback, fraction

    def wrap(self, available_width: float, available_height: float) -> tuple[float, float]:
        return 0, 0

    def draw(self) -> None:
        self.callback(self.fraction)


def generated_line(now: datetime | None = None) -> str:
    return f"Generated {(now or datetime.now(timezone.utc)):%Y-%m-%d %H:%M} UTC"


def _table_style(font: str, bold: str, *, header: bool) -> TableStyle:
    commands: list[tuple[Any, ...]] = [
        ("FONTNAME", (0, 0), (-1, -1), bold if header else font),
        ("FONTSIZE", (0, 0), (-1, -1), CELL_FONT_SIZE),
        ("LEADING", (0, 0), (-1, -1), CELL_LEADING),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("GRID", (0, 0), (-1, -1), 0.4, GRID),
        ("LEFTPADDING", (0, 0), (-1, -1), CELL_PADDING),
        ("RIGHTPADDING", (0, 0), (-1, -1), CELL_PADDING),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]
    commands.append(("BACKGROUND", (0, 0), (-1, -1), HEADER_FILL) if header
                    else ("ROWBACKGROUNDS", (0, 0), (-1, -1), [colors.white, STRIPE_FILL]))
    return TableStyle(commands)


def _short_time(value: str | None) -> str:
    """'2026-11-22T18:30:00Z' -> '2026-11-22 18:30' (the column is narrow; the header says UTC)."""
    return value[:16].replace("T", " ") if value else ""


def task_cells(rows: Sequence[Sequence[Any]], wrapper: Wrapper) -> list[list[str]]:
    """Export rows (shared.task_export.SELECT_EXPORT_ROWS order) as the PDF table's cell strings."""
    widths = [width - 2 * CELL_PADDING for _, width in TASK_COLUMNS]
    cells = []
    for row in rows:
        task_id, title, description, status, priority, due_at, tags = row[:7]
        cells.append([str(task_id), wrapper.wrap(title, widths[1], TITLE_MAX_CHARS), status.replace("_", " "),
                      priority, _short_time(due_at), wrapper.wrap(tags or "", widths[5], TAGS_MAX_CHARS),
                      wrapper.wrap(description or "", widths[6], DESCRIPTION_MAX_CHARS)])
    return cells


def render_task_table(file: BinaryIO, rows: Sequence[Sequence[Any]], *, title: str, subtitle: str,
                      on_progress: Callable[[float], None] = lambda fraction: None) -> None:
    """Write a PDF of ``rows`` as a table: title and generation time, the header on every page, page numbers.

    :param on_progress: called with 0..1 as pages are laid out (from this thread).
    """
    font, bold = fonts()
    page_width, page_height = landscape(A4)
    col_widths = [width for _, width in TASK_COLUMNS]
    header = Table([[name for name, _ in TASK_COLUMNS]], colWidths=col_widths,
                   style=_table_style(font, bold, header=True))
    _, header_height = header.wrap(page_width, page_height)
    title_height = 42.0
    top = page_height - MARGIN

    def draw_header(canvas: Canvas, y: float) -> None:
        header.wrapOn(canvas, page_width, page_height)
        header.drawOn(canvas, MARGIN, y - header_height)

    def first_page(canvas: Canvas, doc: BaseDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont(bold, 15)
        canvas.drawString(MARGIN, top - 16, title)
        canvas.setFont(font, 8.5)
        canvas.setFillColor(colors.HexColor("#52606d"))
        canvas.drawString(MARGIN, top - 32, subtitle)
        canvas.restoreState()
        draw_header(canvas, top - title_height)

    def later_page(canvas: Canvas, doc: BaseDocTemplate) -> None:
        draw_header(canvas, top)

    width = page_width - 2 * MARGIN
    first = Frame(MARGIN, MARGIN, width, top - title_height - header_height - MARGIN, 0, 0, 0, 0, id="first")
    later = Frame(MARGIN, MARGIN, width, top - header_height - MARGIN, 0, 0, 0, 0, id="later")
    doc = BaseDocTemplate(file, pagesize=(page_width, page_height), title=title, author="Taskdeck",
                          leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN, bottomMargin=MARGIN)
    doc.addPageTemplates([PageTemplate("first", [first], onPage=first_page),
                          PageTemplate("later", [later], onPage=later_page)])
    doc.build(_task_story(rows, font, bold, col_widths, on_progress), canvasmaker=canvas_maker(f"Taskdeck · {title}"))


def _task_story(rows: Sequence[Sequence[Any]], font: str, bold: str, col_widths: Sequence[float],
                on_progress: Callable[[float], None]) -> list[Flowable]:
    story: list[Flowable] = [NextPageTemplate("later")]
    if not rows:
        empty = ParagraphStyle("empty", fontName=font, fontSize=10, spaceBefore=8)
        story.append(Paragraph("No tasks match these filters.", empty))
        return story
    wrapper, style, total = Wrapper(font, CELL_FONT_SIZE), _table_style(font, bold, header=False), len(rows)
    for start in range(0, total, CHUNK_ROWS):
        chunk = task_cells(rows[start:start + CHUNK_ROWS], wrapper)
        story.append(Table(chunk, colWidths=col_widths, style=style, splitByRow=1))
        story.append(ProgressMark(on_progress, min(start + CHUNK_ROWS, total) / total))
    return story
