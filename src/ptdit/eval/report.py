"""The demo's HTML report: samples with prompts and oracle scores, the loss curve and the headline numbers."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import torch


def _data_uri(path: Path) -> str:
    kind = {".png": "image/png", ".gif": "image/gif", ".mp4": "video/mp4"}[path.suffix]
    return f"data:{kind};base64," + base64.b64encode(path.read_bytes()).decode()


def sample_verdicts(dataset: str, sample_CFHW: torch.Tensor, prompt: str) -> list[tuple[bool, bool, str]]:
    """(passed, scored, "check: why") for every check of one sample (ptdit.eval.checks): what the oracle found.
    A check is not scored when its object was not drawn (docs/oracle-benchmark.md#checks-and-dependency-gating)."""
    from ptdit.eval.checks import CHECKERS
    from ptdit.eval.oracle import to_unit_numpy

    if dataset not in CHECKERS:
        return []
    checks, _ = CHECKERS[dataset](to_unit_numpy(sample_CFHW[None])[0], prompt)
    return [(c.passed, c.scored, f"{c.name}: {c.why}") for c in checks]


def _verdict_html(verdicts: list[tuple[bool, bool, str]]) -> str:
    """The failed checks with their reasons, gated ones only counted (they repeat "not drawn"), or how many passed."""
    if not verdicts:
        return ""
    failed = [why for ok, scored, why in verdicts if not ok and scored]
    gated = sum(not scored for _, scored, _ in verdicts)
    if not failed and not gated:
        return f'<br><span class="ok">all {len(verdicts)} checks passed</span>'
    items = "".join(f"<li>{html.escape(why)}</li>" for why in failed)
    if gated:
        items += f"<li>{gated} more not scored: their object was not drawn</li>"
    return f'<br><span class="bad">{len(failed) + gated} of {len(verdicts)} checks failed:</span><ul>{items}</ul>'


_PIXELATED = "image-rendering:pixelated;"  # nearest-neighbour upscaling keeps 32 px samples sharp


def _sample_figure(
    out: Path, i: int, sample_CFHW: torch.Tensor, prompt: str, score: float, cfg: Any, scale: int
) -> tuple[Path, str]:
    """Writes sample i's files (PNG; for clips and view sets also a GIF) and returns (PNG, its HTML figure).

    A still image shows as itself; a clip or view set as its GIF (the video playing, or the object turning)
    above the row of its frames / views, so both the motion and every frame can be checked."""
    from ptdit.recipe.tasks import get_task
    from ptdit.sampling.media import image_grid, save_gif, save_png, to_uint8_frames

    samples_dir = out / "samples"
    frames = to_uint8_frames(sample_CFHW)
    still = samples_dir / f"{i:03d}.png"
    save_png(still, image_grid(list(frames), columns=len(frames)) if len(frames) > 1 else frames[0], {"prompt": prompt})
    height = sample_CFHW.shape[-2] * scale
    if len(frames) == 1:
        media = f'<img src="{_data_uri(still)}" style="{_PIXELATED}height:{height}px" alt="sample {i}">'
    else:
        gif = save_gif(samples_dir / f"{i:03d}.gif", frames, fps=cfg.pipeline.fps)
        what = "views" if get_task(cfg.pipeline.task).media == "multiview" else "frames"
        media = (
            f'<img src="{_data_uri(gif)}" style="{_PIXELATED}height:{height}px" alt="sample {i}, animated"><br>'
            f'<img src="{_data_uri(still)}" style="{_PIXELATED}height:{height // 2}px" alt="sample {i}, {what}">'
            f'<br><span class="note">the {len(frames)} {what}</span>'
        )
    verdicts = _verdict_html(sample_verdicts(cfg.data.dataset, sample_CFHW, prompt))
    caption = f"{html.escape(prompt)}<br><b>oracle {score:.2f}</b>{verdicts}"
    return still, f"<figure>{media}<figcaption>{caption}</figcaption></figure>"


# long function: most of it is the HTML page, kept in one piece so the page reads top to bottom.
def write_report(
    out: Path, metrics: dict[str, Any], pixels: torch.Tensor, prompts: list[str], scores: torch.Tensor, cfg: Any
) -> Path:
    """report.html: samples (videos and view sets as GIFs with their frame rows) with prompts, oracle scores and
    per-sample verdicts, the oracle benchmark's table, the loss curve and the headline numbers."""
    from ptdit.sampling.media import sample_strips, save_png
    from ptdit.train.artifacts import plot_loss_curve

    (out / "samples").mkdir(parents=True, exist_ok=True)
    scale = 4 if pixels.shape[-1] <= 64 else 1  # nearest-neighbour upscaling keeps 32 px samples readable
    figures = [
        _sample_figure(out, i, sample, prompt, score, cfg, scale)[1]
        for i, (sample, prompt, score) in enumerate(zip(pixels, prompts, scores.tolist(), strict=True))
    ]
    save_png(out / "samples.png", sample_strips(pixels))
    loss_png = plot_loss_curve(out / "metrics.jsonl", out / "loss.png")
    rows = "\n".join(figures)
    headline = [
        ("oracle caption-adherence accuracy", f"{metrics['oracle_accuracy']:.3f} on {metrics['eval_prompts']} prompts"),
        *_benchmark_headline(metrics),
        (
            "training",
            f"{metrics['steps']} steps, {metrics['samples_seen']:,} samples in {metrics['train_seconds']:.0f} s"
            + (" (stopped by the --minutes cap)" if metrics.get("stopped_by") == "max_minutes" else ""),
        ),
        ("throughput", f"{metrics['samples_per_second']:.1f} samples/s"),
        (
            "model",
            f"{metrics['parameters']:,} parameters ({cfg.model.get('preset', 'custom')}, "
            f"width {cfg.model_config().dim}, depth {cfg.model_config().depth})",
        ),
        ("sampling", f"{metrics['sampler']}, {metrics['sampling_steps']} steps, CFG {metrics['cfg_scale']}"),
        ("final training loss", f"{metrics['final_loss']:.4f}"),
    ]
    table = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in headline)
    loss_img = f'<img src="{_data_uri(loss_png)}">' if loss_png else "<p>(no loss curve: matplotlib missing)</p>"
    sample_command = f'ptdit sample --checkpoint {metrics["checkpoint"]} --prompt "{prompts[0]}"'
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>ptdit demo: {html.escape(metrics["task"])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse}}
th,td{{text-align:left;padding:4px 12px;border-bottom:1px solid #ddd}} .grid{{display:flex;flex-wrap:wrap;gap:12px}}
figure{{margin:0;width:{max((pixels.shape[-1] + 2) * scale * max(pixels.shape[2] // 2, 1), 160)}px}}
figcaption{{font-size:12px}} figcaption ul{{margin:2px 0;padding-left:16px}} .ok{{color:#070}} .bad{{color:#b00}}
.note{{color:#666;font-size:11px}}</style></head>
<body><h1>ptdit demo: {html.escape(metrics["task"])} on <code>{html.escape(metrics["dataset"])}</code></h1>
<p>A PT-DiT trained from nothing on this machine's CPU, sampled with its EMA weights on
{metrics["eval_prompts"]} fixed prompts and scored by the dataset's oracle (fraction of captioned attributes
recovered by plain image analysis); under each sample, the checks it failed and why.</p>
<table>{table}</table>
{_benchmark_section(metrics)}
<h2>Samples</h2><div class="grid">{rows}</div>
<h2>Training loss</h2>{loss_img}
<h2>Sample more</h2><pre>{html.escape(sample_command)}</pre>
</body></html>
"""
    report = out / "report.html"
    report.write_text(page)
    return report


def _benchmark_headline(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """Headline rows: the oracle benchmark's overall accuracy with its interval, and shapes-FD with its floor."""
    rows = []
    if metrics.get("benchmark"):
        b = metrics["benchmark"]
        lo, hi = b["overall"]["ci95"]
        rows.append(
            (f"oracle benchmark {b['suite']}, overall", f"{b['overall']['accuracy']:.3f} (95% CI {lo:.3f}-{hi:.3f})")
        )
    if metrics.get("shapes_fd"):
        fd = metrics["shapes_fd"]
        rows.append(
            ("shapes-FD", f"{fd['shapes_fd']:.3f} ({fd['num_fake']} samples; real vs real {fd['real_floor']:.3f})")
        )
    return rows


def _benchmark_section(metrics: dict[str, Any]) -> str:
    """The per-category table of the oracle benchmark (docs/oracle-benchmark.md)."""
    if not metrics.get("benchmark"):
        return ""
    b = metrics["benchmark"]
    rows = "\n".join(
        f"<tr><td>{html.escape(name)}</td><td>{c['accuracy']:.3f}</td><td>{c['ci95'][0]:.3f}-{c['ci95'][1]:.3f}</td>"
        f"<td>{c['prompts']}</td></tr>"
        for name, c in b["categories"].items()
    )
    lo, hi = b["overall"]["ci95"]
    truncated = b.get("truncated_prompts", 0)
    note = (
        f"<p>{truncated} of the suite's prompts are longer than this checkpoint's text encoder takes and were "
        "truncated: a model trained on shorter captions cannot see their last objects.</p>"
        if truncated
        else ""
    )
    overall = f"<tr><th>overall</th><th>{b['overall']['accuracy']:.3f}</th><th>{lo:.3f}-{hi:.3f}</th><th></th></tr>"
    return f"""<h2>Oracle benchmark ({html.escape(b["suite"])})</h2>
<p>The task's fixed prompt suite, one sample per prompt; a sample passes its category when every attribute the
category checks is found (GenEval-style; per-sample reasons in <code>benchmark/results.jsonl</code>).</p>
<table><tr><th>category</th><th>accuracy</th><th>95% CI</th><th>prompts</th></tr>
{rows}
{overall}</table>{note}"""


__all__ = ["sample_verdicts", "write_report"]
