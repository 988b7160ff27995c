"""The demo's HTML report: samples with prompts and oracle scores, the loss curve and the headline numbers."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import torch


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


# long function: most of it is the HTML page, kept in one piece so the page reads top to bottom.
def write_report(
    out: Path, metrics: dict[str, Any], pixels: torch.Tensor, prompts: list[str], scores: torch.Tensor, cfg: Any
) -> Path:
    """report.html: sample grid with prompts and per-sample oracle scores, loss curve, headline numbers."""
    from ptdit.sampling.media import image_grid, sample_strips, save_gif, save_png, to_uint8_frames
    from ptdit.train.artifacts import plot_loss_curve

    samples_dir = out / "samples"
    samples_dir.mkdir(parents=True, exist_ok=True)
    cells = []
    for i, (sample, prompt, score) in enumerate(zip(pixels, prompts, scores.tolist(), strict=True)):
        frames = to_uint8_frames(sample)
        still = samples_dir / f"{i:03d}.png"
        save_png(
            still, image_grid(list(frames), columns=len(frames)) if len(frames) > 1 else frames[0], {"prompt": prompt}
        )
        if len(frames) > 1:
            save_gif(samples_dir / f"{i:03d}.gif", frames, fps=cfg.pipeline.fps)
        cells.append((still, prompt, score))
    save_png(out / "samples.png", sample_strips(pixels))
    loss_png = plot_loss_curve(out / "metrics.jsonl", out / "loss.png")

    scale = 4 if pixels.shape[-1] <= 64 else 1  # nearest-neighbour upscaling keeps 32 px samples readable
    rows = "\n".join(
        f'<figure><img src="{_png_data_uri(p)}" style="height:{pixels.shape[-2] * scale}px;image-rendering:pixelated">'
        f"<figcaption>{html.escape(prompt)}<br><b>oracle {score:.2f}</b></figcaption></figure>"
        for p, prompt, score in cells
    )
    headline = [
        ("oracle caption-adherence accuracy", f"{metrics['oracle_accuracy']:.3f} on {metrics['eval_prompts']} prompts"),
        *_benchmark_headline(metrics),
        (
            "training",
            f"{metrics['steps']} steps, {metrics['samples_seen']:,} samples in {metrics['train_seconds']:.0f} s",
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
    loss_img = f'<img src="{_png_data_uri(loss_png)}">' if loss_png else "<p>(no loss curve: matplotlib missing)</p>"
    sample_command = f'ptdit sample --checkpoint {metrics["checkpoint"]} --prompt "{prompts[0]}"'
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>ptdit demo: {html.escape(metrics["task"])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse}}
th,td{{text-align:left;padding:4px 12px;border-bottom:1px solid #ddd}} .grid{{display:flex;flex-wrap:wrap;gap:12px}}
figure{{margin:0;width:{max(pixels.shape[-1] * scale * (pixels.shape[2] if pixels.shape[2] > 1 else 1), 140)}px}}
figcaption{{font-size:12px}}</style></head>
<body><h1>ptdit demo: {html.escape(metrics["task"])} on <code>{html.escape(metrics["dataset"])}</code></h1>
<p>A PT-DiT trained from nothing on this machine's CPU, sampled with its EMA weights on
{metrics["eval_prompts"]} fixed prompts and scored by the dataset's oracle (fraction of captioned attributes
recovered by plain image analysis).</p>
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


__all__ = ["write_report"]
