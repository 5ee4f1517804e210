"""`drsynth report --run DIR`: one self-contained HTML page (images inlined) and its Markdown twin.

It reads only the run folder (design.md, "Run directory"): run.json, studies/*/results.json + figure.png,
eval/*/metrics.json + confusion PNGs, models/*/checkpoint (configs, training curves), explain/*/*.png,
samples/*.png. Every part is optional; the page lists what it did not find. The paper comparison puts each
study result beside the number the paper gives (PAPER below).
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from drsynth import __version__
from drsynth.errors import ConfigError
from drsynth.fsutil import atomic_write_text


@dataclass(frozen=True)
class PaperNumber:
    """One number of the paper, addressed like a study series: (study, group, name, domain, metric)."""

    study: str
    group: str
    name: str
    domain: str
    metric: str
    value: float | None  # fraction; None when the text gives no number (only the figure shows it)
    source: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# The paper's numbers: Valtchev & Wu, "Domain randomization for neural network classification", J Big Data 8,
# 94 (2021) (text only; its figures are not available as data). Setting: frozen ImageNet VGG-16 + 128-unit
# head, 10 epochs, 10,000 images per class, tested on Kaggle cat/dog photos (80-20 split). "approx." marks a
# number the text states loosely ("nearly 16%") or that follows from two stated numbers; value None means the
# text gives no number, and the source says what the text does say and which figure shows it.
_P = PaperNumber
PAPER: tuple[PaperNumber, ...] = (
    _P("architecture", "real", "no-dropout", "real", "accuracy", 0.975,
       'text: real model "near 97.5%" (Fig. 2, before dropout was added)'),
    _P("architecture", "synthetic", "no-dropout", "real", "accuracy", 0.86,
       'text: synthetic model "underperforms at 86%" (Fig. 2)'),
    _P("architecture", "real", "dropout-0.3", "real", "accuracy", None,
       'read from Fig. 3 (approx.); text: dropout has "no noticeable effects"'),
    _P("architecture", "synthetic", "dropout-0.3", "real", "accuracy", 0.8526,
       "text (Conclusions): the control synthetic model, 85.26%"),
    _P("architecture", "real", "unfrozen", "real", "accuracy", None,
       'read from Fig. 3 (approx.); text: unfreezing VGG-16 "reduced accuracy substantially"'),
    _P("architecture", "synthetic", "unfrozen", "real", "accuracy", None,
       'read from Fig. 3 (approx.); text: unfreezing VGG-16 "reduced accuracy substantially"'),
    _P("ablation", "synthetic", "control", "real", "accuracy", 0.8526, "text (Conclusions): 85.26%"),
    _P("ablation", "synthetic", "default-pose", "real", "accuracy", 0.8826,
       'text: "increase ... to 88.26% by actually limiting the posing"'),
    _P("ablation", "synthetic", "no-occluders", "real", "accuracy", 0.88,
       'approx.: text says removing obstructors "increased model accuracy nearly 3%" (85.26 + ~3)'),
    _P("ablation", "synthetic", "single-breed", "real", "accuracy", 0.69,
       'approx.: text says one breed per class "reduced our accuracy by nearly 16%" (85.26 - ~16)'),
    _P("ablation", "synthetic", "no-skies", "real", "accuracy", None,
       'read from Fig. 4 (approx.); text: skies have no "significant effects"'),
    _P("ablation", "synthetic", "no-textures", "real", "accuracy", None,
       'read from Fig. 4 (approx.); text: surrounding textures have no "significant effects"'),
    _P("ablation", "synthetic", "no-lighting", "real", "accuracy", None,
       "read from Fig. 4 (approx.); the text gives no number"),
    _P("ablation", "synthetic", "textured-subject", "real", "accuracy", None,
       'read from Fig. 4 (approx.); text: it "seems to actually lower accuracy a bit"'),
    _P("transfer", "synthetic", "ood-mean", "ood-mean", "accuracy", 0.726,
       'text: synthetic model "72.6% on a mixture of real and animation images"'),
    _P("transfer", "real", "ood-mean", "ood-mean", "accuracy", None,
       "read from Fig. 7 (approx.); text: below the synthetic model's 72.6%"),
    _P("transfer", "real", "real", "real", "accuracy", 0.975, 'text: "near 97.5%" (Fig. 2)'),
    _P("transfer", "synthetic", "real", "real", "accuracy", None,
       "read from Fig. 7 (approx.); text: 85.26% for the control, 88.26% for the default-pose model"),
    _P("transfer", "synthetic", "toon", "toon", "accuracy", None,
       'read from Fig. 7 (approx.); text: "worse on this new Toon domain vs the real model, by nearly 20%"'),
    _P("transfer", "real", "toon", "toon", "accuracy", None,
       'read from Fig. 7 (approx.); text: the real model transfers "reasonabl[y]" to the cartoons'),
    _P("transfer", "real", "synthetic", "synthetic", "accuracy", None,
       'read from Fig. 7 (approx.); text: the real model "generalized very poorly" to the synthetic domain'),
    _P("scaling", "synthetic", "2-classes", "real", "accuracy", None,
       "read from Fig. 8 (approx.); the text gives no separate number for the 2-class model of Fig. 8"),
    _P("scaling", "synthetic", "2-classes", "real", "aar", None,
       "read from Fig. 8 (approx.); the text gives no separate number for the 2-class model of Fig. 8"),
    _P("scaling", "synthetic", "3-classes", "real", "accuracy", None,
       'read from Fig. 8 (approx.); text: accuracy "remain[s] consistent moving up to 3 and 4 categories"'),
    _P("scaling", "synthetic", "4-classes", "real", "accuracy", None,
       'read from Fig. 8 (approx.); text: accuracy "remain[s] consistent moving up to 3 and 4 categories"'),
    _P("scaling", "synthetic", "3-classes", "real", "aar", None,
       'read from Fig. 8 (approx.); text: AAR "rises with each subsequent category added"'),
    _P("scaling", "synthetic", "4-classes", "real", "aar", None,
       'read from Fig. 8 (approx.); text: AAR "rises with each subsequent category added"'),
)


def paper_numbers(study: str) -> list[PaperNumber]:
    return [p for p in PAPER if p.study == study]


def paper_lookup(study: str, group: str, name: str, domain: str, metric: str) -> PaperNumber | None:
    """The paper's number for a series, or None. The paper tests on real photos: a series on a stand-in domain
    (e.g. held-out renders when no real photos were given) is not comparable and gets None."""
    p = paper_entry(study, group, name, metric)
    return p if p is not None and p.domain == domain else None


def paper_entry(study: str, group: str, name: str, metric: str) -> PaperNumber | None:
    """The paper's entry for a condition, whatever domain it was measured on."""
    return next((p for p in PAPER if (p.study, p.group, p.name, p.metric) == (study, group, name, metric)), None)


# --- collecting the run folder -----------------------------------------------------------------------------


@dataclass
class Section:
    title: str
    anchor: str
    html: list[str]
    md: list[str]


class _Page:
    """Builds the HTML (images as data URIs) and the Markdown (images by relative path) side by side."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.sections: list[Section] = []
        self.missing: list[str] = []

    def section(self, title: str, anchor: str) -> Section:
        s = Section(title, anchor, [], [])
        self.sections.append(s)
        return s

    def image(self, s: Section, path: Path, caption: str, *, width: str = "100%") -> None:
        rel = path.relative_to(self.run_dir).as_posix()
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        mime = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
        s.html.append(f'<figure style="max-width:{width}"><img src="data:{mime};base64,{data}" alt="{_e(caption)}">'
                      f"<figcaption>{_e(caption)} <span class=path>({_e(rel)})</span></figcaption></figure>")
        s.md.append(f"![{caption}]({rel})\n\n*{caption}*\n")

    def open_details(self, s: Section, summary: str) -> None:
        s.html.append(f"<details><summary>{_e(summary)}</summary>")
        s.md.append(f"<details><summary>{summary}</summary>\n")

    def close_details(self, s: Section) -> None:
        s.html.append("</details>")
        s.md.append("</details>\n")

    def table(self, s: Section, header: list[str], rows: list[list[str]]) -> None:
        head = ("<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr></thead>") if any(header) else ""
        s.html.append(f"<table>{head}<tbody>"
                      + "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
                      + "</tbody></table>")
        s.md.append("| " + " | ".join(_md(h) for h in header) + " |\n|" + "---|" * len(header) + "\n"
                    + "".join("| " + " | ".join(_md(c) for c in r) + " |\n" for r in rows))

    def para(self, s: Section, text: str) -> None:
        s.html.append(f"<p>{_e(text)}</p>")
        s.md.append(text + "\n")

    def code(self, s: Section, title: str, obj: Any) -> None:
        text = obj if isinstance(obj, str) else json.dumps(obj, indent=2, sort_keys=True, default=str)
        s.html.append(f"<details><summary>{_e(title)}</summary><pre>{_e(text)}</pre></details>")
        s.md.append(f"<details><summary>{title}</summary>\n\n```json\n{text}\n```\n\n</details>\n")


def _e(x: Any) -> str:
    return html.escape(str(x))


def _md(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _ci(c: Any) -> str:
    if c.n < 2:
        return _pct(c.mean)
    return f"{_pct(c.mean)} [{100 * c.ci95[0]:.1f}, {100 * c.ci95[1]:.1f}]"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except Exception:
        return None


def _sorted_dirs(p: Path) -> list[Path]:
    return sorted(d for d in p.iterdir() if d.is_dir()) if p.is_dir() else []


# --- the report --------------------------------------------------------------------------------------------


def build_report(run_dir: str | Path, *, title: str | None = None) -> tuple[Path, Path]:
    """Write RUN/report.html and RUN/report.md from whatever the run folder holds; returns both paths."""
    from drsynth.evaluate import EvalResults
    from drsynth.studies import STUDIES, TITLES, StudyResults

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run folder not found: {run_dir} (expected the --out folder of `drsynth run` or "
                          "`drsynth study`)")
    run = _read_json(run_dir / "run.json") or {}
    page = _Page(run_dir)
    studies = {s: StudyResults.read(run_dir / "studies" / s / "results.json")
               for s in STUDIES if (run_dir / "studies" / s / "results.json").is_file()}
    evals = {d.name: EvalResults.read(d / "metrics.json") for d in _sorted_dirs(run_dir / "eval")
             if (d / "metrics.json").is_file()}

    # Overview and domains
    sec = page.section("Run", "run")
    page.table(sec, ["", ""], [
        ["run", str(run.get("name", run_dir.name))],
        ["created", str(run.get("created", "—"))],
        ["preset", str(run.get("preset", "—"))],
        ["drsynth (run / report)", f"{run.get('drsynth_version', '—')} / {__version__}"],
        ["studies", ", ".join(studies) or "none"],
        ["models evaluated", str(len(evals))],
    ])
    _domains_section(page, run, evals)

    # Paper comparison
    sec = page.section("Results beside the paper", "paper")
    rows = []
    for st, res in studies.items():
        for c in res.conditions:
            p = paper_entry(st, c.group, c.name, c.metric)
            if p is None:
                paper, source = "—", "not in the paper"
            elif p.domain != c.domain:
                paper, source = "—", f"not comparable: the paper measured this on '{p.domain}' ({p.source})"
            else:
                paper, source = _pct(p.value), p.source
            rows.append([st, f"{c.group}-trained", c.label, c.domain, c.metric, _ci(c), paper, source])
    if rows:
        page.para(sec, "Ours: mean over seeds [95% interval]. Paper: frozen VGG-16, 10,000 images per class, Kaggle "
                  "photos. A paper number on a different domain than ours is not comparable and is left out.")
        page.table(sec, ["study", "model", "condition", "domain", "metric", "ours", "paper", "paper source"], rows)
    else:
        page.para(sec, "No study results in this run (run `drsynth study NAME --out RUN`).")
        page.missing.append("studies/*/results.json")

    # Studies
    for st in STUDIES:
        if st not in studies:
            page.missing.append(f"studies/{st}")
            continue
        res = studies[st]
        sec = page.section(TITLES.get(st, st), f"study-{st}")
        fig = run_dir / "studies" / st / res.figure
        if fig.is_file():
            page.image(sec, fig, f"{TITLES.get(st, st)}")
        page.table(sec, ["model", "condition", "domain", "metric", "mean [95%]", "per seed"], [
            [f"{c.group}-trained", c.label, c.domain, c.metric, _ci(c), ", ".join(_pct(v) for v in c.values)]
            for c in res.conditions])
        for note in res.notes:
            page.para(sec, f"Note: {note}")

    # Evaluations
    if evals:
        sec = page.section("Evaluation per model", "eval")
        domains = list(dict.fromkeys(d for ev in evals.values() for d in ev.domains))
        page.para(sec, "Accuracy of every model on every domain (* = its training domain); the details of each "
                  "model (per-class accuracy, AAR, confusion matrices) unfold below.")
        page.table(sec, ["model", "classes", *domains, "out-of-domain mean"], [
            [name, str(len(ev.classes)),
             *[(_pct(ev.domains[d].accuracy) + ("*" if d in ev.train_domains else "")) if d in ev.domains else "—"
               for d in domains], _pct(ev.mean_out_of_domain_accuracy)]
            for name, ev in evals.items()])
        for name, ev in evals.items():
            page.open_details(sec, f"{name}: " + ", ".join(f"{d} {_pct(m.accuracy)}" for d, m in ev.domains.items()))
            rows = []
            for dom, m in ev.domains.items():
                per = ", ".join(f"{c} {_pct(a)}" for c, a in m.per_class_accuracy.items())
                rows.append([dom + (" (train)" if dom in ev.train_domains else ""), str(m.n), _pct(m.accuracy),
                             f"{100 * m.aar:+.1f}", per])
            page.table(sec, ["domain", "images", "accuracy", "AAR (pts)", "per class"], rows)
            page.para(sec, f"backbone {ev.backbone}, classes {', '.join(ev.classes)}, onnxruntime providers "
                      f"{', '.join(ev.providers)}; mean out-of-domain accuracy {_pct(ev.mean_out_of_domain_accuracy)}")
            for dom in ev.domains:
                png = run_dir / "eval" / name / f"confusion-{dom}.png"
                if png.is_file():
                    page.image(sec, png, f"{name} on {dom}", width="360px")
            page.close_details(sec)
    else:
        page.missing.append("eval/*/metrics.json")

    _training_section(page, run_dir)
    _images_section(page, run_dir / "explain", "Explainability (GradCAM, occlusion sensitivity)", "explain",
                    "explain/<model>/<domain>.png")
    _images_section(page, run_dir / "samples", "Sample renders and domain images", "samples", "samples/*.png",
                    width="560px")

    # Configs
    sec = page.section("Configuration", "config")
    if run.get("config"):
        page.code(sec, "run settings", run["config"])
    for name, sc in (run.get("scenarios") or {}).items():
        page.code(sec, f"scenario {name}", sc)
    for st, res in studies.items():
        page.code(sec, f"study {st}", res.config)
    for d in _sorted_dirs(run_dir / "models"):
        info = _read_json(d / "checkpoint" / "model.json")
        if info:
            page.code(sec, f"model {d.name}: training config", info.get("train_config") or info)
    if not sec.html:
        page.para(sec, "No configuration recorded (run.json or checkpoints missing).")

    if page.missing:
        sec = page.section("Not in this run", "missing")
        page.para(sec, "The report shows what the run folder holds; these parts were not found: "
                  + ", ".join(page.missing))

    title = title or f"drsynth report: {run.get('name', run_dir.name)}"
    html_path, md_path = run_dir / "report.html", run_dir / "report.md"
    atomic_write_text(html_path, _render_html(title, page))
    atomic_write_text(md_path, _render_md(title, page))
    return html_path, md_path


def _domains_section(page: _Page, run: dict[str, Any], evals: dict[str, Any]) -> None:
    sec = page.section("Domains used", "domains")
    domains = dict(run.get("domains") or {})
    seen: dict[str, tuple[str, int]] = {}
    for ev in evals.values():
        for dom, m in ev.domains.items():
            seen.setdefault(dom, (m.uri, m.n))
    rows = []
    for name in list(domains) + [d for d in seen if d not in domains]:
        d = domains.get(name, {})
        uri, n = seen.get(name, (d.get("uri", "—"), None))
        rows.append([name, d.get("kind", "—"), d.get("source", "—"), d.get("description", "—"),
                     str(d.get("uri", uri)), "—" if n is None else str(n)])
    if rows:
        page.para(sec, "user = image folders or datasets the user gave (real photos, real cartoons); rendered = made "
                  "by drsynth (held-out breeds and seeds, toon style).")
        page.table(sec, ["domain", "kind", "source", "description", "where", "images evaluated"], rows)
    else:
        page.para(sec, "No domains recorded.")
    for note in run.get("notes") or []:
        page.para(sec, f"Note: {note}")


def _training_section(page: _Page, run_dir: Path) -> None:
    models = _sorted_dirs(run_dir / "models")
    if not models:
        page.missing.append("models/*")
        return
    sec = page.section("Training", "training")
    rows = []
    for d in models:
        ck = d / "checkpoint"
        info = _read_json(ck / "model.json") or {}
        spec = _read_json(d / "spec.json") or {}
        spec = spec.get("spec", spec)  # drsynth.studies writes {"spec": ModelSpec, "data": uri}
        m = info.get("metrics") or {}
        best = m.get("best_val_accuracy", m.get("val_accuracy"))
        rows.append([d.name, str(info.get("backbone", spec.get("backbone", "—"))), ", ".join(info.get("classes", [])),
                     str(spec.get("dataset", "—")), str((info.get("head") or {}).get("dropout", "—")),
                     "no" if info.get("frozen", True) else "yes", _pct(best) if isinstance(best, float) else "—"])
    page.table(sec, ["model", "backbone", "classes", "dataset", "dropout", "unfrozen", "best val accuracy"], rows)
    for d in models:
        curves = sorted((d / "checkpoint").glob("*.png")) + sorted(d.glob("*.png"))
        for png in curves:
            page.image(sec, png, f"{d.name}: {png.stem.replace('_', ' ')}", width="380px")
        if not curves:
            hist = _history(d / "checkpoint")
            if hist is not None:
                page.image(sec, hist, f"{d.name}: training curves", width="380px")


def _history(ck: Path) -> Path | None:
    """Plot a checkpoint's history JSON when training left no curve PNG (writes RUN/models/<m>/curves.png)."""
    for name in ("history.json", "curves.json", "metrics.json"):
        data = _read_json(ck / name)
        if isinstance(data, dict) and isinstance(data.get("epochs"), list) and data["epochs"]:
            epochs = data["epochs"]
            break
    else:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [_accuracies(e) for e in epochs]
    keys = sorted({k for row in series for k in row})
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6))
    xs = [e.get("epoch", i + 1) for i, e in enumerate(epochs)]
    for k in keys:
        ax.plot(xs, [row.get(k) for row in series], "-o", label=k)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = ck.parent / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _accuracies(epoch: dict[str, Any]) -> dict[str, float]:
    """Accuracy per split of one history row: drsynth.train's nested {"train": {"accuracy"}, "val": ...,
    "eval": {name: {...}}} or flat "*accuracy*" keys."""
    out: dict[str, float] = {}
    for k, v in epoch.items():
        if isinstance(v, int | float) and "acc" in k and not isinstance(v, bool):
            out[k] = float(v)
        elif isinstance(v, dict) and isinstance(v.get("accuracy"), int | float):
            out[k] = float(v["accuracy"])
        elif k == "eval" and isinstance(v, dict):
            out.update({name: float(d["accuracy"]) for name, d in v.items()
                        if isinstance(d, dict) and isinstance(d.get("accuracy"), int | float)})
    return out


def _images_section(page: _Page, folder: Path, title: str, anchor: str, missing: str, *,
                    width: str = "100%") -> None:
    pngs = sorted(folder.rglob("*.png")) if folder.is_dir() else []
    if not pngs:
        page.missing.append(missing)
        return
    sec = page.section(title, anchor)
    for png in pngs:
        page.image(sec, png, png.relative_to(folder).with_suffix("").as_posix().replace("/", " / "), width=width)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1180px;margin:24px auto;padding:0 16px;
color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:2px solid #eee;padding-bottom:4px;margin-top:36px}
nav{background:#f6f8fa;padding:8px 12px;border-radius:6px;font-size:.92em}nav a{margin-right:14px}
table{border-collapse:collapse;margin:10px 0;font-size:.9em}th,td{border:1px solid #ddd;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}
figure{display:inline-block;margin:8px 12px 8px 0;vertical-align:top}figure img{max-width:100%}
figcaption{font-size:.85em;color:#555;overflow-wrap:anywhere}
.path{color:#999}pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:.8em;max-height:420px}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}.meta{color:#666;font-size:.9em}
"""


def _render_html(title: str, page: _Page) -> str:
    nav = "".join(f'<a href="#{s.anchor}">{_e(s.title)}</a>' for s in page.sections)
    body = "".join(f'<section id="{s.anchor}"><h2>{_e(s.title)}</h2>{"".join(s.html)}</section>'
                   for s in page.sections)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>"
            f'<p class="meta">drsynth {__version__}: domain-randomized synthetic training data, evaluated across '
            f"domains and compared with Valtchev &amp; Wu (2021).</p><nav>{nav}</nav>{body}</body></html>\n")


def _render_md(title: str, page: _Page) -> str:
    out = [f"# {title}\n", f"drsynth {__version__}. Images are referenced relative to this file.\n"]
    for s in page.sections:
        out.append(f"## {s.title}\n")
        out.extend(s.md)
    return "\n".join(out)
