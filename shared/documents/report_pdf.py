"""Report PDFs with charts (reportlab.graphics). Synchronous: the worker runs them in a thread."""
from __future__ import annotations

from typing import Any, BinaryIO, Sequence

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.linecharts import HorizontalLineChart
from reportlab.graphics.charts.piecharts import Pie
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.platypus import Flowable, LongTable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from shared.documents.pdf import GRID, HEADER_FILL, MARGIN, STRIPE_FILL, Wrapper, canvas_maker, fonts, generated_line

BLUE, GREEN, AMBER, RED, GREY = (colors.HexColor(c) for c in ("#2563eb", "#16a34a", "#d97706", "#dc2626",
                                                              "#94a3b8"))
SERIES = (BLUE, GREEN)
STATUS_COLOURS = {"todo": GREY, "in_progress": BLUE, "done": GREEN}
PRIORITY_COLOURS = {"low": GREY, "medium": BLUE, "high": AMBER, "urgent": RED}
CHART_WIDTH = A4[0] - 2 * MARGIN
MAX_AXIS_LABELS = 12


def _styles() -> dict[str, ParagraphStyle]:
    font, bold = fonts()
    return {
        "title": ParagraphStyle("title", fontName=bold, fontSize=17, leading=21, spaceAfter=2),
        "meta": ParagraphStyle("meta", fontName=font, fontSize=8.5, leading=11, textColor=colors.HexColor("#52606d"),
                               spaceAfter=10),
        "h2": ParagraphStyle("h2", fontName=bold, fontSize=11.5, leading=14, spaceBefore=12, spaceAfter=4),
        "body": ParagraphStyle("body", fontName=font, fontSize=9, leading=12),
    }


def _period(data: dict[str, Any]) -> str:
    end = data["end"]
    return f"{data['start']:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"


def _kpis(pairs: Sequence[tuple[str, Any]]) -> Table:
    font, bold = fonts()
    table = Table([[label for label, _ in pairs], [f"{value:,}" for _, value in pairs]],
                  colWidths=[CHART_WIDTH / len(pairs)] * len(pairs))
    table.setStyle(TableStyle([
        ("FONTNAME", (0, 0), (-1, 0), font), ("FONTSIZE", (0, 0), (-1, 0), 8),
        ("TEXTCOLOR", (0, 0), (-1, 0), colors.HexColor("#52606d")),
        ("FONTNAME", (0, 1), (-1, 1), bold), ("FONTSIZE", (0, 1), (-1, 1), 18), ("LEADING", (0, 1), (-1, 1), 22),
        ("BOX", (0, 0), (-1, -1), 0.5, GRID), ("BACKGROUND", (0, 0), (-1, -1), STRIPE_FILL),
    ]))
    return table


def _grid_table(rows: list[list[str]], widths: Sequence[float]) -> LongTable:
    font, bold = fonts()
    return LongTable(rows, colWidths=list(widths), repeatRows=1, style=TableStyle([
        ("FONTNAME", (0, 0), (-1, -1), font), ("FONTNAME", (0, 0), (-1, 0), bold),
        ("FONTSIZE", (0, 0), (-1, -1), 8), ("LEADING", (0, 0), (-1, -1), 10),
        ("GRID", (0, 0), (-1, -1), 0.4, GRID), ("BACKGROUND", (0, 0), (-1, 0), HEADER_FILL),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, STRIPE_FILL]), ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]))


def _pie(title: str, counts: dict[str, int], palette: dict[str, Any], width: float) -> Drawing:
    font, bold = fonts()
    drawing = Drawing(width, 190)
    drawing.add(String(0, 176, title, fontName=bold, fontSize=10))
    if not sum(counts.values()):
        drawing.add(String(0, 90, "No tasks in this period", fontName=font, fontSize=9, fillColor=colors.grey))
        return drawing
    pie = Pie()
    pie.x, pie.y, pie.width, pie.height = 10, 15, 140, 140
    items = [(name, n) for name, n in counts.items() if n]  # zero slices only clutter the labels
    pie.data = [n for _, n in items]
    pie.labels = [str(n) for _, n in items]
    pie.slices.strokeColor = colors.white
    pie.slices.fontName, pie.slices.fontSize = font, 8
    for index, (name, _) in enumerate(items):
        pie.slices[index].fillColor = palette[name]
    drawing.add(pie)
    drawing.add(_legend(165, 120, [(palette[name], f"{name.replace('_', ' ')} ({n})") for name, n in items]))
    return drawing


def _legend(x: float, y: float, pairs: list[tuple[Any, str]], *, per_column: int = 8) -> Legend:
    """Swatches and names; ``per_column=1`` lays them out in one row."""
    legend = Legend()
    legend.x, legend.y, legend.alignment = x, y, "right"
    legend.fontName, legend.fontSize, legend.deltax = fonts()[0], 8, 90
    legend.columnMaximum, legend.colorNamePairs = per_column, pairs
    return legend


def _labels(names: list[str]) -> list[str]:
    """Every k-th category label, so a long axis stays readable."""
    step = max(1, -(-len(names) // MAX_AXIS_LABELS))
    return [name if index % step == 0 else "" for index, name in enumerate(names)]


def _set_data(chart: Any, categories: list[str], series: list[tuple[str, list[int]]], font: str) -> None:
    """Data and axes shared by the bar and line charts: categories below, a value axis from 0."""
    chart.data = [values or [0] for _, values in series]
    chart.categoryAxis.categoryNames = _labels(categories) or [""]
    chart.categoryAxis.labels.fontName = chart.valueAxis.labels.fontName = font
    chart.categoryAxis.labels.fontSize = chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.valueMin = 0
    chart.valueAxis.valueMax = max([1, *(v for _, values in series for v in values)])


def _bars(title: str, categories: list[str], series: list[tuple[str, list[int]]], *, height: float = 210) -> Drawing:
    font, bold = fonts()
    drawing = Drawing(CHART_WIDTH, height)
    drawing.add(String(0, height - 14, title, fontName=bold, fontSize=10))
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 30, 30, CHART_WIDTH - 40, height - 75
    _set_data(chart, categories, series, font)
    chart.valueAxis.forceZero = True
    chart.barSpacing, chart.groupSpacing = 1, 4
    for index, colour in enumerate(SERIES[:len(series)]):
        chart.bars[index].fillColor, chart.bars[index].strokeColor = colour, colour
    drawing.add(chart)
    drawing.add(_legend(CHART_WIDTH - 190, height - 8, [(SERIES[i], name) for i, (name, _) in enumerate(series)],
                        per_column=1))
    return drawing


def _lines(title: str, categories: list[str], series: list[tuple[str, list[int]]]) -> Drawing:
    font, bold = fonts()
    drawing = Drawing(CHART_WIDTH, 200)
    drawing.add(String(0, 186, title, fontName=bold, fontSize=10))
    chart = HorizontalLineChart()
    chart.x, chart.y, chart.width, chart.height = 30, 30, CHART_WIDTH - 40, 130
    _set_data(chart, categories, series, font)
    for index, colour in enumerate(SERIES[:len(series)]):
        chart.lines[index].strokeColor, chart.lines[index].strokeWidth = colour, 1.5
    drawing.add(chart)
    drawing.add(_legend(CHART_WIDTH - 190, 192, [(SERIES[i], name) for i, (name, _) in enumerate(series)],
                        per_column=1))
    return drawing


def _side_by_side(left: Drawing, right: Drawing) -> Table:
    table = Table([[left, right]], colWidths=[CHART_WIDTH / 2] * 2)
    table.setStyle(TableStyle([("LEFTPADDING", (0, 0), (-1, -1), 0), ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return table


def summary_story(data: dict[str, Any]) -> list[Flowable]:
    styles = _styles()
    story: list[Flowable] = [
        Paragraph("Task summary", styles["title"]),
        Paragraph(f"{_period(data)} · {generated_line(data['generated_at'])}", styles["meta"]),
        _kpis([("Created in period", data["created"]), ("Completed in period", data["completed"]),
               ("Overdue now", data["overdue"])]),
        Spacer(1, 10),
        _side_by_side(_pie("Tasks by status", data["by_status"], STATUS_COLOURS, CHART_WIDTH / 2),
                      _pie("Tasks by priority", data["by_priority"], PRIORITY_COLOURS, CHART_WIDTH / 2)),
        Paragraph("Status and priority count the tasks created in the period, as they are now.", styles["body"]),
        Spacer(1, 8),
        _bars("Created vs completed per week", [f"{w['week']:%b %d}" for w in data["weekly"]],
              [("created", [w["created"] for w in data["weekly"]]),
               ("completed", [w["completed"] for w in data["weekly"]])]),
        Paragraph("Most overdue tasks", styles["h2"]),
    ]
    if not data["most_overdue"]:
        return [*story, Paragraph("Nothing is overdue.", styles["body"])]
    wrapper = Wrapper(fonts()[0], 8)
    widths = (300, 60, 70, 60, 49)
    rows = [["Title", "Priority", "Status", "Due (UTC)", "Days late"]]
    rows += [[wrapper.wrap(t["title"], widths[0] - 12), t["priority"], t["status"].replace("_", " "),
              f"{t['due_at']:%Y-%m-%d}", str(t["days_overdue"])] for t in data["most_overdue"]]
    return [*story, _grid_table(rows, widths)]


def admin_activity_story(data: dict[str, Any]) -> list[Flowable]:
    styles, days, totals = _styles(), data["days"], data["totals"]
    names = [f"{d['day']:%m-%d}" for d in days]
    rows = [["Day (UTC)", "Signups", "Active users", "Tasks created", "Tasks completed"]]
    rows += [[f"{d['day']:%Y-%m-%d}", str(d["signups"]), str(d["active_users"]), str(d["tasks_created"]),
              str(d["tasks_completed"])] for d in days]
    return [
        Paragraph("Admin activity", styles["title"]),
        Paragraph(f"{_period(data)} · {generated_line(data['generated_at'])}", styles["meta"]),
        _kpis([("Signups", totals["signups"]), ("Active users", totals["active_users"]),
               ("Tasks created", totals["tasks_created"]), ("Tasks completed", totals["tasks_completed"])]),
        Spacer(1, 10),
        _lines("Signups and active users per day", names,
               [("signups", [d["signups"] for d in days]), ("active users", [d["active_users"] for d in days])]),
        _bars("Tasks created and completed per day", names,
              [("created", [d["tasks_created"] for d in days]), ("completed", [d["tasks_completed"] for d in days])]),
        Paragraph("Per day", styles["h2"]),
        _grid_table(rows, [CHART_WIDTH / 5] * 5),
    ]


def render_report(file: BinaryIO, data: dict[str, Any]) -> None:
    """Write the report PDF for ``data`` (from ``shared.reports.summary`` or ``admin_activity``)."""
    title = "Task summary" if data["kind"] == "summary" else "Admin activity"
    story = summary_story(data) if data["kind"] == "summary" else admin_activity_story(data)
    doc = SimpleDocTemplate(file, pagesize=A4, title=title, author="Taskdeck", leftMargin=MARGIN,
                            rightMargin=MARGIN, topMargin=MARGIN, bottomMargin=MARGIN * 1.5)
    doc.build(story, canvasmaker=canvas_maker(f"Taskdeck · {title} · {_period(data)}"))
