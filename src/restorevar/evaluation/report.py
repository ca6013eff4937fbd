"""Evaluation reports: the terminal table (laid out like the paper's Table 1), per_image.csv,
results.json, report.html with best/worst images, report.png, and the labelled image grid that
`analyze` also uses.

Every table cell pairs the degraded input's score with ours, so gains are visible. Averages are
the unweighted mean of the group means, as the paper averages its test sets.
"""

from __future__ import annotations

import csv
import datetime
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from restorevar.evaluation.metrics import METRICS
from restorevar.images.save import save_image

DECIMALS = {"psnr": 2, "ssim": 4, "lpips": 4, "niqe": 3, "brisque": 2, "musiq": 2, "clipiqa": 4}
UNAVAILABLE = "unavailable"

# labelled_grid layout, in pixels
GAP = 6
CAPTION_HEIGHT = 14
LINE_HEIGHT = 12
LABEL_WIDTH = 180


# ---- aggregation --------------------------------------------------------------------------------


def _mean(values: list[float]) -> float:
    """Mean over computed values (NaN = failed or not applicable); inf stays inf (identical images)."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def group_summary(records, key: str, metrics: list[str]) -> dict[str, dict]:
    """group -> {"images", "seconds_per_image", "input": {metric: mean}, "output": {...}}; key is a
    record field ("dataset" or "degradation"). Metrics an image lacks (full-reference on a
    no-reference set) are NaN."""
    groups: dict[str, list] = {}
    for record in records:
        groups.setdefault(getattr(record, key), []).append(record)
    summary = {}
    for group, members in groups.items():
        summary[group] = {"images": len(members), "seconds_per_image": _mean([r.seconds for r in members])}
        for side in ("input", "output"):
            summary[group][side] = {m: _mean([getattr(r, side).get(m, math.nan) for r in members]) for m in metrics}
    return summary


def average_row(summary: dict[str, dict], metrics: list[str]) -> dict:
    rows = list(summary.values())
    average = {
        "images": sum(row["images"] for row in rows),
        "seconds_per_image": _mean([row["seconds_per_image"] for row in rows]),
    }
    for side in ("input", "output"):
        average[side] = {m: _mean([row[side][m] for row in rows]) for m in metrics}
    return average


def _fmt(value: float, metric: str) -> str:
    if math.isnan(value):
        return "–"
    return "inf" if math.isinf(value) else f"{value:.{DECIMALS.get(metric, 3)}f}"


# ---- terminal table -----------------------------------------------------------------------------


def header_lines(result) -> list[str]:
    model = result.model
    parameters = f", {model['parameters'] / 1e6:.1f}M parameters" if model.get("parameters") else ""
    return [
        f"model:      {model.get('name') or 'default'} ({model.get('image_size')} px native{parameters})",
        f"protocol:   {result.protocol}",
        f"metrics:    {result.convention}",
        "cells:      degraded input | ours;  ↑ higher is better, ↓ lower is better;  – not applicable",
    ]


def format_table(result, group: str = "dataset") -> str:
    """Rows = datasets (or degradations) + Average; per metric two columns: input and ours."""
    metrics = list(result.options.metrics)
    computed = result.computed_metrics
    summary = group_summary(result.records, group, computed)
    rows = [(name, row) for name, row in summary.items()] + [("Average", average_row(summary, computed))]
    name_width = max(12, *(len(name) for name, _ in rows))
    cell = 9
    top = " " * (name_width + 8)
    sub = f"{group:<{name_width}} {'images':>7}"
    for metric in metrics:
        arrow = "↑" if METRICS[metric].higher_is_better else "↓"
        top += f"{metric.upper() + ' ' + arrow:^{2 * cell}}"
        sub += f"{'input':>{cell}}{'ours':>{cell}}"
    top, sub = top + f"{'':>8}", sub + f"{'s/img':>8}"
    lines = [*header_lines(result), "", top, sub, "-" * len(sub)]
    for name, row in rows:
        if name == "Average":
            lines.append("-" * len(sub))
        line = f"{name:<{name_width}} {row['images']:>7}"
        for metric in metrics:
            if metric in result.unavailable:
                line += f"{UNAVAILABLE:^{2 * cell}}"
            else:
                line += f"{_fmt(row['input'][metric], metric):>{cell}}{_fmt(row['output'][metric], metric):>{cell}}"
        lines.append(line + f"{row['seconds_per_image']:>8.2f}")
    lines += [f"{UNAVAILABLE}: {name} — {reason}" for name, reason in result.unavailable.items()]
    return "\n".join(lines)


# ---- files --------------------------------------------------------------------------------------


def write_csv(result, path: Path) -> Path:
    """One row per image: dataset, name, degradation, size, seconds, input_<metric>, output_<metric>."""
    metrics = list(result.options.metrics)
    columns = ["dataset", "name", "degradation", "height", "width", "seconds"]
    columns += [f"{side}_{m}" for m in metrics for side in ("input", "output")]
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for r in result.records:
            row = [r.dataset, r.name, r.degradation, r.height, r.width, repr(r.seconds)]
            for metric in metrics:
                for side in (r.input, r.output):
                    row.append(
                        UNAVAILABLE if metric in result.unavailable else repr(side[metric]) if metric in side else ""
                    )
            writer.writerow(row)
    return path


def _json_safe(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # JSON has no NaN/inf
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def results_dict(result) -> dict:
    computed = result.computed_metrics
    options, by_dataset = result.options, group_summary(result.records, "dataset", computed)
    for spec in result.datasets:
        if spec.name in by_dataset:
            by_dataset[spec.name].update(path=str(spec.path), kind=spec.kind)
    convention = options.convention
    return _json_safe(
        {
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "protocol": {
                "mode": options.mode,
                "description": result.protocol,
                "tile": options.tile,
                "overlap": options.overlap,
                "batch_size": options.batch_size,
                "limit": options.limit,
            },
            "convention": {
                "name": convention.name,
                "description": result.convention,
                "y_channel": convention.y_channel,
                "crop_border": convention.crop_border,
                "quantize_8bit": convention.quantize_8bit,
                "ssim_window": convention.window,
            },
            "model": result.model,
            "metrics": {"requested": list(options.metrics), "computed": computed, "unavailable": result.unavailable},
            "datasets": by_dataset,
            "degradations": group_summary(result.records, "degradation", computed),
            "average": {**average_row(by_dataset, computed), "note": "unweighted mean of the dataset means"},
            "ranking_metric": result.ranking_metric,
            "best": [entry.record.name for entry in result.best],
            "worst": [entry.record.name for entry in result.worst],
            "environment": result.environment,
            "failed": [{"image": image, "error": error} for image, error in result.failed],
        }
    )


def write_json(result, path: Path) -> Path:
    path.write_text(json.dumps(results_dict(result), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _scores(entry, metrics: list[str]) -> str:
    r = entry.record
    return "; ".join(f"{m} {_fmt(r.input[m], m)} → {_fmt(r.output[m], m)}" for m in metrics if m in r.output)


def _save_showcase(result, out_dir: Path) -> list[tuple[str, object, list[str]]]:
    """Write the best/worst thumbnails to out_dir/images; -> (title, entry, relative paths)."""
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    cases = []
    for kind, entries in (("best", result.best), ("worst", result.worst)):
        for number, entry in enumerate(entries, 1):
            files = []
            for part in ("input", "output", "target"):
                image = getattr(entry, part)
                relative = f"images/{kind}_{number:02d}_{part}.png"
                if image is not None:
                    save_image(image, out_dir / relative, overwrite=True)
                files.append(relative if image is not None else "")
            cases.append((f"{kind} {number}", entry, files))
    return cases


def write_html(result, out_dir: Path, group: str = "dataset") -> Path:
    """report.html: header, the table, and best/worst images (input | ours | target) with their scores."""
    cases = _save_showcase(result, out_dir)
    esc = html.escape
    metric = result.ranking_metric or "score"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>RestoreVAR evaluation</title><style>",
        "body{font-family:sans-serif;margin:2em}pre{background:#f4f4f4;padding:1em;overflow:auto}",
        "td{vertical-align:top;padding:4px}img{max-width:320px;display:block}figure{margin:0}",
        "</style></head><body><h1>RestoreVAR evaluation</h1>",
        f"<pre>{esc(format_table(result, group))}</pre>",
        f"<h2>Best and worst images by {esc(metric.upper())} gain over the input</h2><table>",
        "<tr><th></th><th>input</th><th>ours</th><th>target</th></tr>",
    ]
    metrics = result.computed_metrics
    for title, entry, files in cases:
        r = entry.record
        text = f"<b>{esc(title)}</b><br>{esc(r.dataset)} / {esc(r.name)}<br>{esc(r.degradation)}, {r.width}×{r.height}"
        row = [f"<td>{text}<br>gain {entry.gain:+.3f}<br><small>{esc(_scores(entry, metrics))}</small></td>"]
        for file in files:
            row.append(f"<td><img src='{esc(file)}' alt=''></td>" if file else "<td>no reference</td>")
        parts.append("<tr>" + "".join(row) + "</tr>")
    parts.append("</table></body></html>")
    path = out_dir / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def write_png(result, path: Path, cell: int = 160) -> Path | None:
    """report.png: the best/worst images as a labelled grid (None when there is nothing to show)."""
    rows = []
    for kind, entries in (("best", result.best), ("worst", result.worst)):
        for number, entry in enumerate(entries, 1):
            r, metric = entry.record, result.ranking_metric
            label = f"{kind} {number}\n{r.dataset}\n{r.name}\n{metric} gain {entry.gain:+.2f}"
            rows.append((label, [("input", entry.input), ("ours", entry.output), ("target", entry.target)]))
    if not rows:
        return None
    save_image(labelled_grid(rows, cell=cell), path, overwrite=True)
    return path


def write_report(result, out_dir, group: str = "dataset") -> dict[str, Path]:
    """All report files into out_dir (created); existing report files there are replaced."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": write_csv(result, out_dir / "per_image.csv"),
        "json": write_json(result, out_dir / "results.json"),
        "html": write_html(result, out_dir, group),
    }
    png = write_png(result, out_dir / "report.png")
    if png is not None:
        paths["png"] = png
    return paths


# ---- labelled image grid ------------------------------------------------------------------------


def _fit_text(draw: ImageDraw.ImageDraw, text: str, width: int, font) -> str:
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…" if len(text) > 1 else ""
    return text


def grid_size(num_rows: int, num_columns: int, cell: int) -> tuple[int, int]:
    """(width, height) of a `labelled_grid`."""
    return (LABEL_WIDTH + num_columns * (cell + GAP) + GAP, GAP + num_rows * (CAPTION_HEIGHT + cell + GAP))


def labelled_grid(
    rows: Sequence[tuple[str, Sequence[tuple[str, Image.Image | None]]]], *, cell: int = 160
) -> Image.Image:
    """White RGB grid: a row label on the left ('\\n' splits lines), each cell a caption above an
    image fitted into cell×cell (aspect kept). A None image leaves its cell blank."""
    num_columns = max(len(cells) for _, cells in rows)
    canvas = Image.new("RGB", grid_size(len(rows), num_columns, cell), "white")
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    for row_number, (label, cells) in enumerate(rows):
        top = GAP + row_number * (CAPTION_HEIGHT + cell + GAP)
        for line_number, line in enumerate(label.split("\n")):
            draw.text(
                (GAP, top + CAPTION_HEIGHT + line_number * LINE_HEIGHT),
                _fit_text(draw, line, LABEL_WIDTH - 2 * GAP, font),
                fill="black",
                font=font,
            )
        for column, (caption, image) in enumerate(cells):
            left = LABEL_WIDTH + column * (cell + GAP)
            draw.text((left, top), _fit_text(draw, caption, cell, font), fill="black", font=font)
            if image is None:
                continue
            fitted = image.convert("RGB")
            scale = cell / max(fitted.size)
            fitted = fitted.resize(
                (max(1, round(fitted.width * scale)), max(1, round(fitted.height * scale))), Image.Resampling.LANCZOS
            )
            corner = (left + (cell - fitted.width) // 2, top + CAPTION_HEIGHT + (cell - fitted.height) // 2)
            canvas.paste(fitted, corner)
    return canvas
