"""What each study writes under `--out`: the summary JSON, PNG plots (matplotlib), a self-contained HTML page and
the same tables as Markdown (`report.md`, with the plots linked), ready to copy into STUDY.md
(docs/study.md#outputs)."""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ptdit.io import atomic_file


def write_json(path: Path, data: dict[str, Any]) -> Path:
    with atomic_file(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2, allow_nan=False, default=_finite) + "\n")
    return path


def _finite(value: Any) -> Any:
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _pyplot():
    from ptdit.optional import require

    matplotlib = require("matplotlib", "eval", purpose="the study plots")
    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    return plt


def save_plot(path: Path, draw: Callable[[Any], None], *, size: tuple[float, float] = (7, 4)) -> Path:
    """Draws into a new figure with `draw(plt)` and writes it as a PNG."""
    plt = _pyplot()
    fig = plt.figure(figsize=size)
    draw(plt)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict) and "mean" in value:
        return f"{value['mean']:.4g} &plusmn; {value['std']:.2g}"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return html.escape(str(value))


class Table:
    """Headers and rows, rendered as HTML (report.html) or Markdown (report.md)."""

    def __init__(self, headers: list[str], rows: list[list[Any]]) -> None:
        self.headers, self.rows = headers, rows

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    def markdown(self) -> str:
        cells = lambda row: "| " + " | ".join(html.unescape(_fmt(c)).replace("|", "/") for c in row) + " |"  # noqa: E731
        lines = ["| " + " | ".join(self.headers) + " |", "|" + "---|" * len(self.headers)]
        return "\n".join([*lines, *(cells(row) for row in self.rows)]) + "\n"


def table(headers: list[str], rows: list[list[Any]]) -> Table:
    return Table(headers, rows)


Part = Table | Path  # a table, or a plot written under OUT
Section = tuple[str, list[Part]]


def write_page(out: Path, title: str, sections: list[Section], note: str = "") -> Path:
    """OUT/report.html (a self-contained page, plots inlined) and OUT/report.md (the same tables, plots linked)."""
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}"
    )
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head>"]
    parts.append(f"<body><h1>{html.escape(title)}</h1><p>{html.escape(note)}</p>")
    for heading, content in sections:
        rendered = "".join(p.html() if isinstance(p, Table) else _img(p) for p in content)
        parts.append(f"<h2>{html.escape(heading)}</h2>{rendered}")
    parts.append("</body></html>")
    with atomic_file(out / "report.html") as tmp:
        Path(tmp).write_text("\n".join(parts))
    md = [f"# {title}\n", f"{note}\n"]
    for heading, content in sections:
        md.append(f"## {heading}\n")
        md += [p.markdown() if isinstance(p, Table) else f"![{p.stem}]({p.relative_to(out).as_posix()})\n"
               for p in content]  # fmt: skip
    with atomic_file(out / "report.md") as tmp:
        Path(tmp).write_text("\n".join(md))
    return out / "report.html"


# ----------------------------------------------------------------------------------------------------------------
# Ablations
# ----------------------------------------------------------------------------------------------------------------


def _bar_plot(rows: list[dict[str, Any]], metric: str, ylabel: str):
    def draw(plt) -> None:
        usable = [r for r in rows if r.get(metric)]
        x = range(len(usable))
        plt.bar(x, [r[metric]["mean"] for r in usable], yerr=[r[metric]["std"] for r in usable], capsize=3)
        plt.xticks(list(x), [r["label"] for r in usable], rotation=45, ha="right", fontsize=8)
        plt.ylabel(ylabel)

    return draw


def _paper_scatter(rows: list[dict[str, Any]]):
    def draw(plt) -> None:
        usable = [r for r in rows if r.get("shapes_fd")]
        plt.scatter([r["paper_fid"] for r in usable], [r["shapes_fd"]["mean"] for r in usable])
        for r in usable:
            plt.annotate(r["label"], (r["paper_fid"], r["shapes_fd"]["mean"]), fontsize=7)
        plt.xlabel("paper FID-50K (Table 2)")
        plt.ylabel("our shapes-FD (mean over seeds)")

    return draw


VARIANT_COLUMNS = (
    ("paper FID", "paper_fid"), ("shapes-FD", "shapes_fd"), ("adherence", "adherence"), ("oracle", "oracle"),
    ("final loss", "final_loss"),
    ("grid artefact", "grid_artefact"), ("vs real", "grid_artefact_rel"), ("params", "parameters"),
    ("train MAC", "train_macs"), ("train s", "train_seconds"),
)  # fmt: skip


def write_ablation_report(out: Path, summary: dict[str, Any]) -> Path:
    """OUT/ablations.json, OUT/plots/*.png and OUT/report.html of the ablation study."""
    rows = summary["variants"]
    write_json(out / "ablations.json", summary)
    plots = out / "plots"
    pngs = [
        save_plot(plots / "shapes_fd.png", _bar_plot(rows, "shapes_fd", "shapes-FD (lower is better)")),
        save_plot(plots / "adherence.png", _bar_plot(rows, "adherence", "adherence (higher is better)")),
        save_plot(plots / "oracle.png", _bar_plot(rows, "oracle", "oracle benchmark (higher is better)")),
        save_plot(
            plots / "grid_artefact.png", _bar_plot(rows, "grid_artefact_rel", "grid artefacts / real (1 = none)")
        ),
        save_plot(plots / "paper_vs_ours.png", _paper_scatter(rows), size=(6, 5)),
    ]
    note = f"Profile: {json.dumps(summary['profile'])}. Paper values: Table 2 of the paper (FID-50K)."
    sections = [*_ablation_tables(summary), ("Plots", pngs)]
    return write_page(out, "PT-DiT ablations in miniature (Table 2)", sections, note)


CORR_METRICS = ("shapes_fd", "adherence", "oracle", "final_loss")
CLAIM_METRICS = ("shapes_fd", "adherence", "oracle")


def _ablation_tables(summary: dict[str, Any]) -> list[Section]:
    rows = summary["variants"]
    variant_rows = [[r["label"], *[r.get(key) for _, key in VARIANT_COLUMNS]] for r in rows]
    categories = sorted({c for r in rows for c in r["oracle_categories"]})
    category_rows = [[r["label"], *[r["oracle_categories"].get(c) for c in categories]] for r in rows]
    checks = sorted({c for r in rows for c in r.get("adherence_checks") or {}})
    check_rows = [[r["label"], *[(r.get("adherence_checks") or {}).get(c) for c in checks]] for r in rows]
    corr = summary["rank_correlation"]
    corr_rows = [[scope, c["variants"], *[c.get(m) for m in CORR_METRICS]] for scope, c in corr.items()]
    claim_rows = [
        [c["claim"], *[(c.get(m) or {}).get(k) for m in CLAIM_METRICS for k in ("holds", "clear")]]
        for c in summary["claims"]
    ]
    real = summary.get("real_grid_artefact", {})
    claim_headers = ["claim", *[f"{k} ({m})" for m in CLAIM_METRICS for k in ("holds", "clear")]]
    return [
        ("Variants (mean ± std over seeds)", [table(["variant", *[h for h, _ in VARIANT_COLUMNS]], variant_rows)]),
        ("Adherence per check (training-distribution captions)", [table(["variant", *checks], check_rows)]),
        ("Oracle benchmark accuracy per category (t2i-v1)", [table(["variant", *categories], category_rows)]),
        ("Rank correlation with the paper (Spearman)", [table(["scope", "variants", *CORR_METRICS], corr_rows)]),
        ("The paper's conclusions in miniature", [table(claim_headers, claim_rows)]),
        ("Grid-artefact ratio of real images", [table(["window", "ratio"], [[k, v] for k, v in real.items()])]),
    ]  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Efficiency
# ----------------------------------------------------------------------------------------------------------------

MODEL_LABELS = {"ptdit": "PT-DiT", "pixart": "PixArt-alpha", "ptdit-class": "PT-DiT-Class", "dit": "DiT"}
CLASS_MODELS = ("ptdit-class", "dit")  # drawn dashed: the class-conditional pair


def _curve_plot(scale: dict[str, Any], x_key: str, y_key: str, xlabel: str, ylabel: str):
    def draw(plt) -> None:
        for model, points in scale["curves"].items():
            style = "--" if model in CLASS_MODELS else "-"
            xs, ys = [p[x_key] for p in points], [p[y_key] for p in points]
            plt.plot(xs, ys, style, marker="o", label=MODEL_LABELS[model])
        plt.xlabel(xlabel)
        plt.ylabel(ylabel)
        plt.title(f"{scale['name']} ({scale['tokens']} tokens)")
        plt.legend()

    return draw


def write_efficiency_report(out: Path, summary: dict[str, Any]) -> Path:
    """OUT/efficiency.json, OUT/plots/*.png and OUT/report.html of the efficiency study."""
    from ptdit.study.efficiency import PAIRS

    write_json(out / "efficiency.json", summary)
    sections = []
    for scale in summary["scales"]:
        name = scale["name"]
        pngs = [
            save_plot(
                out / "plots" / f"{name}-fd-macs.png",
                _curve_plot(scale, "macs", "shapes_fd", "training MACs", "shapes-FD"),
            ),
            save_plot(
                out / "plots" / f"{name}-fd-seconds.png",
                _curve_plot(scale, "train_seconds", "shapes_fd", "training seconds", "shapes-FD"),
            ),
            save_plot(
                out / "plots" / f"{name}-adherence-macs.png",
                _curve_plot(scale, "macs", "adherence", "training MACs", "adherence"),
            ),
        ]
        cost = [
            [
                MODEL_LABELS[m],
                c["parameters"],
                c["train_macs_per_step"] / 1e9,
                c["attention_share"],
                c["seconds_per_step"],
            ]
            for m, c in scale["cost"].items()
        ]
        ratio_rows = [
            [f"{MODEL_LABELS[PAIRS[m][0]]} / {MODEL_LABELS[m]}", *[r.get(k) for k in RATIO_KEYS]]
            for m, r in scale["ratios"].items()
        ]
        sections.append(
            (
                f"{name}: {scale['tokens']} tokens, width {scale['profile']['dim']}, depth {scale['profile']['depth']}",
                [
                    table(["model", "params", "train GMAC / step", "attention share", "s / step"], cost),
                    table(["ratio", *RATIO_KEYS], ratio_rows),
                    *pngs,
                ],
            )
        )
    note = (
        "All four models train on the same one-object images, steps and seeds: PT-DiT and PixArt-alpha on the "
        "captions (oracle: the t2i-v1 benchmark), PT-DiT-Class and DiT (dashed) on (colour, shape) class labels "
        "(oracle: class adherence). Each baseline is compared with the PT-DiT of its conditioning. "
        "MACs: 1 multiply-accumulate = the papers' FLOP (docs/flops.md)."
    )
    return write_page(out, "PT-DiT efficiency in miniature", sections, note)


RATIO_KEYS = ("macs_per_step", "seconds_per_step", "macs_to_reach", "fd_at_macs", "seconds_to_reach", "fd_at_seconds")


# ----------------------------------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------------------------------


def _layer_plot(rows: list[dict[str, Any]], keys: list[tuple[str, str]], ylabel: str, title: str):
    """One colour per quantity, one line per timestep (lighter = less noise)."""

    def draw(plt) -> None:
        timesteps = sorted({r["timestep"] for r in rows})
        for k, (key, style) in enumerate(keys):
            for i, timestep in enumerate(timesteps):
                chosen = sorted((r for r in rows if r["timestep"] == timestep), key=lambda r: r["layer"])
                alpha = 0.3 + 0.7 * (i + 1) / len(timesteps)
                label = key if i == len(timesteps) - 1 else None
                plt.plot([r["layer"] for r in chosen], [r.get(key) for r in chosen], style, color=f"C{k}",
                         alpha=alpha, label=label)  # fmt: skip
        plt.xlabel("layer")
        plt.xticks(sorted({r["layer"] for r in rows}))
        plt.ylabel(ylabel)
        plt.title(f"{title}; t = {', '.join(f'{t:g}' for t in timesteps)} (lighter = smaller t)", fontsize=9)
        plt.legend(fontsize=7)

    return draw


def write_attention_report(out: Path, summary: dict[str, Any]) -> Path:
    """OUT/attention.json, OUT/plots/*.png and OUT/report.html of the attention study."""
    write_json(out / "attention.json", summary)
    layers, branches = summary["baseline"]["layers"], summary["ptdit"]["branches"]
    sections = []
    for window in sorted({tuple(r["window"]) for r in layers}):
        rows = [r for r in layers if tuple(r["window"]) == window]
        tag = "x".join(map(str, window))
        pngs = [
            save_plot(
                out / "plots" / f"similarity-{tag}.png",
                _layer_plot(
                    rows,
                    [("same_window", "-o"), ("cross_window", "--x")],
                    "cosine similarity of attention rows",
                    f"PixArt-alpha, window {window}",
                ),
            ),
            save_plot(
                out / "plots" / f"in-window-{tag}.png",
                _layer_plot(
                    rows,
                    [("in_window_mass", "-o"), ("uniform_mass", ":")],
                    "attention mass in own window",
                    f"PixArt-alpha, window {window}",
                ),
            ),
        ]
        keys = ["same_window", "cross_window", "ratio", "in_window_mass", "uniform_mass"]
        body = table(["layer", "t", *keys], [[r["layer"], r["timestep"], *[r[k] for k in keys]] for r in rows])
        sections.append((f"Full attention against windows {window}", [body, *pngs]))
    names = [b for b in ("giim", "window", "shifted_window", "text", "ffn") if any(b in r for r in branches)]
    png = save_plot(
        out / "plots" / "branches.png",
        _layer_plot(branches, [(b, "-o") for b in names], "||update|| / ||residual stream||", "PT-DiT branch updates"),
    )
    body = table(["layer", "t", *names], [[r["layer"], r["timestep"], *[r.get(b) for b in names]] for r in branches])
    sections.append(("PT-DiT: relative norm of each branch's update", [body, png]))
    note = f"Profile: {json.dumps(summary['profile'])}; {summary['probe_images']} real images per timestep."
    return write_page(out, "Attention structure (paper Fig. 2, quantified)", sections, note)
