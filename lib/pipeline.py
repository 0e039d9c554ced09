"""Run the notebooks headlessly, in order, with one parameter profile; export HTML and PDF.

    python -m lib.pipeline                         # the quick profile (what `make run` does)
    python -m lib.pipeline --profile full --data /path/to/photos
    python -m lib.pipeline --set epochs=2 --set image_size=32

A profile (notebooks/profiles/<name>.yaml) holds parameters for every notebook at its top level
and per-notebook ones under the notebook's name; each notebook receives the ones its `parameters`
cell declares. Everything goes into one new folder, runs/<profile>-<time>/: the executed
notebooks, html/ (self-contained: images embedded, formulas typeset by a local copy of MathJax),
pdf/ (printed from the HTML by a headless Chromium, when there is one), results/, figures/ and
checkpoints/. A failing notebook stops the run with exit code 1 and a line naming the notebook and
the cell; the partly executed notebook stays for inspection. `--out` naming the folder of an
earlier run of the same profile continues it (start_or_continue): how a long study run that a
session's end cut short goes on. pipeline.json records the profile (its name and values), the
overrides and each attempt's commit and seconds per notebook, written after every notebook.
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from lib import results

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
# In the order they run: chapter 4 compares every model, so it runs after chapter 5, which trains
# the last one (the classification head); readers read them in their numbered order.
NOTEBOOKS = ["01_OriginalCNN", "02_EditedCNN", "03_ResNet18", "05_Classification", "04_Comparison"]
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"  # the one config jupyter-server-mathjax ships
# The template loads require.js from a CDN for interactive widgets; these notebooks have none.
REMOTE_SCRIPT = re.compile(r'<script src="https?://[^"]*"[^>]*>\s*</script>\s*')
# On paper (A4 or Letter, whichever the printer uses), 12 mm margins and no prompt column (the
# "In [4]:" counts mean nothing to a reader): an 88-column code line (the notebooks' format) fits
# the code block at 12 px (9 pt; DejaVu Sans Mono, 0.6 em a character: 477 of A4's 512 pt), and
# 105 columns of what a cell prints at 10 px; pre-wrap is only the safety net for longer lines.
# Charts print at the size they were drawn (for_readers gives each image its width in inches;
# lib.plots draws at most 6.4 in wide), scaled down to the output area (about 7.1 in) if wider,
# and are never split across pages.
PRINT_CSS = """<style>
@page { margin: 12mm; }
@media print {
  :root { --jp-code-font-size: 12px; --jp-cell-prompt-width: 0px; }
  .jp-InputPrompt, .jp-OutputPrompt { display: none; }
  pre { white-space: pre-wrap !important; }
  .jp-OutputArea-output pre { font-size: 10px; }
  img, .jp-OutputArea-output { break-inside: avoid; page-break-inside: avoid; max-width: 100%; }
}
</style>"""


def load_profile(name: str) -> dict:
    path = Path(name) if name.endswith((".yaml", ".yml")) else NOTEBOOK_DIR / "profiles" / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such profile")
    return yaml.safe_load(path.read_text()) or {}


def check_dataset(profile: dict, overrides: dict, name: str) -> None:
    """A profile without a dataset (full) needs one from the command line, before anything runs."""
    dataset = overrides.get("dataset", profile.get("dataset"))
    if dataset is None:
        raise ValueError(f"profile {name} needs a folder of photos: --data DIR (make run DATA=DIR)")
    from lib import datasets  # the names of the public sets, fetched on first use

    if dataset != "photos" and dataset not in datasets.DATASETS and not Path(dataset).is_dir():
        names = ", ".join(["photos", *datasets.DATASETS])
        raise FileNotFoundError(f"{dataset}: no such folder, nor a data set name ({names})")


def parameters_for(notebook: str, profile: dict, overrides: dict) -> dict:
    """The profile's common values, then the notebook's own, then overrides; only declared names."""
    import papermill

    declared = papermill.inspect_notebook(NOTEBOOK_DIR / f"{notebook}.ipynb")
    merged = {k: v for k, v in profile.items() if not isinstance(v, dict)}
    merged |= profile.get(notebook, {}) | overrides
    return {k: v for k, v in merged.items() if k in declared}


def execute(notebook: str, out_dir: Path, parameters: dict) -> Path:
    import papermill

    dst = out_dir / f"{notebook}.ipynb"
    papermill.execute_notebook(
        NOTEBOOK_DIR / f"{notebook}.ipynb",
        dst,
        parameters=parameters,
        kernel_name="python3",
        cwd=NOTEBOOK_DIR,
        progress_bar=False,
        request_save_on_cell_execute=True,  # keep what ran if a cell fails
    )
    return dst


def for_readers(nb, ipynb: Path):
    """The executed notebook `nb` (an nbformat node read from `ipynb`, changed in place and
    returned) as the exports show it: the Colab cell (the first code cell, the one that mentions
    google.colab), the `parameters` cell and papermill's `injected-parameters` cell make way for
    one Markdown box, "How this run was made": every parameter (papermill's injected value, else
    the parameters cell's default as papermill reads it; bold where the run set it), the code's
    commit (results.CODE_COMMIT), the device (the set-up's printed "device: ..." line, else the
    `device` parameter resolved here) and papermill's start time (UTC) and duration. Each PNG
    output gets the width it was drawn at (its pixels over its recorded dpi, in CSS px of 1/96 in),
    so that a chart prints at its own size, fonts at their size (lib.plots), instead of at 96
    pixels an inch. The .ipynb keeps every cell."""
    import ast
    import base64
    import io

    import nbformat
    import papermill
    from PIL import Image

    from lib import checkpoints

    code = [c for c in nb.cells if c.cell_type == "code"]
    for out in (o for c in code for o in c.get("outputs", []) if "image/png" in o.get("data", {})):
        with Image.open(io.BytesIO(base64.b64decode(out.data["image/png"]))) as png:
            dpi, meta = (
                png.info.get("dpi", (0,))[0],
                out.setdefault("metadata", {}).setdefault("image/png", {}),
            )
            if dpi > 0 and "width" not in meta:  # a retina image has its width already
                meta["width"] = round(png.width * 96 / dpi)
    colab = [c for c in code[:1] if "google.colab" in c.source]
    tagged = [c for c in code if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))]
    dropped = {id(c) for c in colab + tagged}  # by identity: two cells may read the same
    if not dropped:
        return nb
    defaults = {}  # the parameters cell's values, read by papermill's own inspection
    for name, declared in papermill.inspect_notebook(ipynb).items():
        try:
            defaults[name] = ast.literal_eval(declared["default"])
        except (ValueError, SyntaxError):  # not a literal: show its source
            defaults[name] = declared["default"]
    run = nb.metadata.get("papermill", {})
    injected = dict(run.get("parameters", {}))
    shown = [
        f"**`{k}={v!r}`**" if k in injected else f"`{k}={v!r}`" for k, v in (defaults | injected).items()
    ]
    streams = (o for c in code if id(c) not in dropped for o in c.get("outputs", []) if "text" in o)
    printed = (re.search(r"^device: ([^;\n]+)", o["text"], re.M) for o in streams)
    device = next((m.group(1) for m in printed if m), None)
    if device is None:
        device = str(checkpoints.pick_device((defaults | injected).get("device", "auto")))
    commit = results.CODE_COMMIT
    commit = f"`{commit[:12]}`" + (" (with uncommitted changes)" if commit.endswith("-dirty") else "")
    when = ""
    if run.get("start_time"):
        start = datetime.fromisoformat(run["start_time"]).astimezone(UTC)
        took = f", {run['duration']:.0f} s" if run.get("duration") is not None else ""
        when = f", {start:%Y-%m-%d %H:%M:%S} UTC{took}"
    box = nbformat.v4.new_markdown_cell(
        f"> **How this run was made.** Code at commit {commit}, run on {device}{when}. "
        "Parameters (bold: set for this run; the rest are the notebook's defaults): " + ", ".join(shown) + "."
    )
    at = next(i for i, c in enumerate(nb.cells) if id(c) in dropped)
    nb.cells = [c for c in nb.cells if id(c) not in dropped]
    nb.cells.insert(at, box)
    return nb


def export_html(ipynb: Path, html_dir: Path) -> Path:
    """Self-contained HTML of an executed notebook as a reader gets it (for_readers); formulas use
    html_dir/mathjax/, copied there once (no CDN)."""
    import jupyter_server_mathjax
    import nbformat
    from nbconvert import HTMLExporter

    mathjax = html_dir / "mathjax"
    if not mathjax.exists():
        shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / "static", mathjax)
    exporter = HTMLExporter(mathjax_url=f"mathjax/MathJax.js?config={MATHJAX_CONFIG}")
    body, _ = exporter.from_notebook_node(for_readers(nbformat.read(ipynb, as_version=4), ipynb))
    body = REMOTE_SCRIPT.sub("", body).replace("</head>", f"{PRINT_CSS}</head>", 1)
    return results.write_atomic(html_dir / f"{ipynb.stem}.html", lambda tmp: tmp.write_text(body, "utf-8"))


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def export_pdf(html: Path, pdf_dir: Path, chromium: str) -> Path:
    """Print the HTML to PDF with a headless Chromium (offline; waits for MathJax to finish)."""

    def print_to(tmp: Path) -> None:
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(
                [
                    chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", f"--user-data-dir={profile}", "--no-pdf-header-footer",
                    "--virtual-time-budget=20000", "--run-all-compositor-stages-before-draw",
                    f"--print-to-pdf={tmp}", html.resolve().as_uri(),
                ],
                check=True, capture_output=True, timeout=300,
            )  # fmt: skip
        if tmp.stat().st_size == 0:
            raise RuntimeError(f"{html}: Chromium wrote no PDF")

    return results.write_atomic(pdf_dir / f"{html.stem}.pdf", print_to)


def start_or_continue(out: Path, profile_name: str, profile: dict, overrides: dict) -> dict:
    """The record (pipeline.json) of the run in `out`: a new one for a new or empty folder, or the
    folder's own when it holds a pipeline run of the same profile (its name and its values) and
    overrides, which then continues: each notebook runs again, and its training cells resume
    their stored runs (a finished run is read back, an interrupted one continues from its last
    epoch), so a long run cut short by the end of a session goes on where it stopped. Any other
    non-empty folder is refused (FileExistsError, one line): it is not this run's."""
    record = {"profile": profile_name, "parameters": profile, "overrides": overrides, "attempts": []}
    if not out.exists() or not any(out.iterdir()):
        return record
    earlier = out / "pipeline.json"
    if not earlier.is_file():
        raise FileExistsError(f"{out}: exists, is not empty and holds no pipeline run; choose another --out")
    before = results.load(earlier)
    if any(before.get(k) != record[k] for k in ("profile", "parameters", "overrides")):
        raise FileExistsError(
            f"{out}: holds a run of profile {before.get('profile')!r} with other parameters or "
            "overrides; continue it with the same ones, or choose another --out"
        )
    print(f"continuing the run in {out} (attempt {len(before['attempts']) + 1})")
    return before


def run(profile_name="quick", out_dir=None, overrides=None, notebooks=NOTEBOOKS, pdf=True) -> Path:
    """Execute and export the notebooks; returns the run folder. Raises on the first failure.
    An `out_dir` holding a run of the same profile and overrides continues (start_or_continue)."""
    import papermill

    profile = load_profile(profile_name)
    check_dataset(profile, overrides or {}, profile_name)
    out = Path(out_dir or REPO / "runs" / f"{Path(profile_name).stem}-{datetime.now():%Y%m%d-%H%M%S}")
    overrides = {**(overrides or {}), "out_dir": str(out.resolve())}
    record = start_or_continue(out, profile_name, profile, overrides)
    (out / "html").mkdir(parents=True, exist_ok=True)
    chromium = find_chromium() if pdf else None
    if pdf and chromium is None:
        print("PDF export skipped: no Chromium found (Debian/Ubuntu: apt-get install chromium)")
    timings = {}
    record["attempts"].append({"started": results.now(), "code": results.CODE_COMMIT, "seconds": timings})
    results.save(out / "pipeline.json", **record)  # first: a run cut short in notebook 1 continues too
    for nb in notebooks:
        t0 = time.perf_counter()
        print(f"{nb}: running ...", flush=True)
        try:
            executed = execute(nb, out, parameters_for(nb, profile, overrides))
        except papermill.PapermillExecutionError as e:
            raise RuntimeError(
                f"{nb} failed in cell {e.exec_count} ({e.ename}: {e.evalue}); "
                f"the partly executed notebook is {out / (nb + '.ipynb')}"
            ) from None
        html = export_html(executed, out / "html")
        if chromium:
            export_pdf(html, out / "pdf", chromium)
        timings[nb] = round(time.perf_counter() - t0, 1)
        print(f"{nb}: done in {timings[nb]} s", flush=True)
        results.save(out / "pipeline.json", **record)  # after each notebook: what has finished
    return out


def publish(run_dir: Path, figures_dir: Path = REPO / "figures") -> None:
    """Copy a finished run's charts (with their data) into figures/, its results files and
    pipeline.json into figures/results/ and its PDF exports into figures/notebooks/: the run that
    README shows, read without running anything. Replaces what was there, on purpose."""
    (figures_dir / "results").mkdir(parents=True, exist_ok=True)
    (figures_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    copies = [(f, figures_dir / f.name) for f in sorted((run_dir / "figures").glob("*"))]
    copies += [(f, figures_dir / "results" / f.name) for f in sorted((run_dir / "results").glob("*.json"))]
    copies += [(f, figures_dir / "notebooks" / f.name) for f in sorted((run_dir / "pdf").glob("*.pdf"))]
    copies.append((run_dir / "pipeline.json", figures_dir / "results" / "pipeline.json"))
    for src, dst in copies:
        results.write_atomic(dst, lambda tmp, src=src: shutil.copyfile(src, tmp))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lib.pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="quick", help="quick, full, or a path to a YAML profile")
    p.add_argument(
        "--data", default=None,
        help="a folder of colour photos, or places365-val / places205-test (fetched on first use): `dataset`",
    )  # fmt: skip
    p.add_argument("--out", default=None, help="run folder (default: runs/<profile>-<time>)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a parameter")
    p.add_argument("--no-pdf", action="store_true", help="skip the PDF export")
    p.add_argument("--publish", action="store_true", help="copy the charts and results into figures/")
    a = p.parse_args(argv)
    # --set values are YAML scalars: 3, 0.001, null, builtin, true
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in a.set)}
    if a.data:
        overrides["dataset"] = a.data
    try:
        out = run(a.profile, a.out, overrides, pdf=not a.no_pdf)
    except (RuntimeError, ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if a.publish:
        publish(out)
        print("figures/ refreshed from this run")
    print(f"done: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
