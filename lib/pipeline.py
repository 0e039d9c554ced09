"""Run the notebooks headlessly, in order, with one parameter profile; export HTML and PDF.

    python -m lib.pipeline                         # the quick profile (what `make run` does)
    python -m lib.pipeline --profile full --data /path/to/photos
    python -m lib.pipeline --set epochs=2 --set image_size=32

A profile (notebooks/profiles/<name>.yaml) holds parameters for every notebook at its top level
and per-notebook ones under the notebook's name; each notebook receives the ones its `parameters`
cell declares. Everything goes into one new folder, runs/<profile>-<time>/: the executed
notebooks, html/ (each file stands alone: images embedded, equations as MathML, no script),
pdf/ (A4, printed from the HTML by a headless Chromium, when there is one), results/, figures/
and checkpoints/. The exports show a notebook as a reader needs it (for_readers): a cell tagged
`remove-cell` is left out, a code cell tagged `remove-input` shows its outputs without its code
(the tags of Jupyter Book and nbconvert's TagRemovePreprocessor); the executed notebook keeps
every cell. A failing notebook stops the run with exit code 1 and a line naming the notebook and the
cell; the partly executed notebook stays for inspection. `--out` naming the folder of an earlier
run of the same profile continues it (start_or_continue): how a long study run that a session's
end cut short goes on. pipeline.json records the profile (its name and values), the overrides and
each attempt's commit and seconds per notebook, written after every notebook.
"""

import argparse
import os
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
# Equations in a math font, one with an OpenType MATH table (fraction bars, script sizes, accents
# and stretchy brackets are placed by it); Chromium on Linux otherwise takes a text serif for
# `math`, puts latex2mathml's hat across the letter and sets formulas smaller than the text. The
# first one here draws the PDFs (Debian's fonts-dejavu-extra, beside the text's DejaVu Sans);
# Windows, macOS and TeX installations have one of the others.
# On paper: A4, 12 mm margins, so 186 mm (527 pt) across. Code prints at 12 px (9 pt; DejaVu Sans
# Mono, 0.6 em a character), the code cells' and the Markdown's fenced blocks' (a shell command)
# alike: an 88-column line (the notebooks' format) takes 477 pt and fits, with the blocks' padding;
# what a cell prints, at 10 px, 105 columns; pre-wrap is only the safety net for longer lines.
# Charts print at the size they were drawn (for_readers gives each image its width in inches;
# lib.plots draws at most 6.4 in wide), scaled down to the output area (about 7.1 in) if wider; a
# chart or a table is never split across pages (lib.plots keeps charts short enough that one that
# jumps to the next page leaves no half-empty page), while text, printed or Markdown, runs on.
READER_CSS = """<style>
math { font-family: "DejaVu Math TeX Gyre", "Cambria Math", "STIX Two Math", "Latin Modern Math", math; }
@page { size: A4; margin: 12mm; }
/* A shell command shown by a cell (lib.notebook.shell) is Markdown output: in code's font, not the
   output area's inherited one; an option such as --checkpoint is never broken after its dashes. */
.jp-RenderedMarkdown.jp-OutputArea-output pre { font-family: var(--jp-code-font-family); }
.jp-RenderedMarkdown code { white-space: nowrap; }
@media print {
  :root { --jp-code-font-size: 12px; }
  pre { white-space: pre-wrap !important; }
  .jp-RenderedHTMLCommon { padding-right: 0; }
  .jp-OutputArea-output pre { font-size: 10px; }
  .jp-RenderedMarkdown pre { font-size: var(--jp-code-font-size) !important; }
  img { max-width: 100%; }
  img, table { break-inside: avoid; page-break-inside: avoid; }
  h1, h2, h3 { break-after: avoid; page-break-after: avoid; }  /* a heading stays with its text */
  /* JupyterLab keeps each output whole on paper (avoid-page, and display: table with overflow
     hidden, which Chromium never splits): a long printed or Markdown output would jump whole. */
  .jp-OutputArea, .jp-OutputArea-child, .jp-OutputArea-child .jp-OutputArea-output {
    display: block; overflow: visible; break-inside: auto;
  }
}
</style>"""
# nbconvert's lab template without its scripts (require.js, MathJax, mermaid, the widget manager:
# each loads code from a CDN or a folder beside the file); the equations are MathML already
# (export_html) and these notebooks draw no diagrams and keep no widgets. READER_CSS closes the
# head.
READER_TEMPLATE = """{%- extends 'index.html.j2' -%}
{% block html_head_js %}{% endblock html_head_js %}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block html_head_js_mathjax %}{% endblock html_head_js_mathjax %}
{% block html_head_js_mermaidjs %}{% endblock html_head_js_mermaidjs %}
{% block html_head_css %}{{ resources.reader_css }}{% endblock html_head_css %}
"""
# A fenced code block's opening or closing line (any indentation: one in a list item counts too;
# a line of backticks with more backticks after it is a code span instead).
FENCE = re.compile(r"[ \t]*(`{3,}(?=[^`]*$)|~{3,})")
# What Markdown text holds, matched left to right: a backslash escape (`\$` is a dollar), a code
# span (a run of backticks up to the next run as long), $$display$$ and $inline$ TeX (neither empty;
# inline math stops at a blank line, as a paragraph does), the latter with the punctuation that
# touches it. A backslash escape inside the TeX is the TeX's own (`\$`, `\\`, `\{`).
MARKDOWN_TEX = re.compile(
    r"\\."
    r"|(?<!`)(?P<ticks>`+)(?!`).+?(?<!`)(?P=ticks)(?!`)"
    r"|\$\$(?P<display>(?:\\.|[^$\\])+?)\$\$"
    r"|(?P<before>[(\"'‘“]*)\$(?P<inline>(?:\\.|[^$\\\n]|\n(?![ \t]*\n))+?)\$(?P<after>[).,;:?\"'’”]*)",
    re.S,
)
# Characters Markdown would read in the MathML's text (`*` of L^*, `_`, brackets, ...): written as
# character references, which Markdown passes through and HTML reads back as the characters.
MARKDOWN_ACTIVE = re.compile(r"[\\`*_\[\]()~$|!]")
# latex2mathml's MathML mended where Chromium draws it unlike TeX (each seen in the notebooks'
# equations, printed with READER_CSS's math font):
CLOSING = r"[)\]}|!]|&#x0002[19];|&#x0005D;|&#x0007[CD];|&#x02016;"  # ) ! ] | } ‖
MATHML_MENDS = [
    # \hat, an ASCII caret as an accent, comes out wide or across the letter; the modifier letter
    # circumflex as a plain overscript sits on the letter as TeX's hat does
    (
        re.compile(r'<mover accent="true">((?:(?!</?mover).)*)<mo>&#x0005E;</mo></mover>'),
        r"<mover>\1<mo>&#x002C6;</mo></mover>",
    ),
    # a minus or plus right after an operator that is not a closing one (an opening bracket, a
    # comma, a relation) is a sign, as TeX reads it, not a binary operator: "[ − 1, 1]"
    (
        re.compile(rf"(<mo[^>]*>(?!{CLOSING})[^<]+</mo>)<mo>(&#x02212;|&#x0002B;)</mo>"),
        r'\1<mo form="prefix">\2</mo>',
    ),
    # a prime is a raised glyph already; as a superscript (w^\prime, w') it comes out tiny and high
    (re.compile(r"<msup>(<m[ion]>[^<]*</m[ion]>)<mi>(&#x0203[234];)</mi></msup>"), r"\1<mo>\2</mo>"),
    # a slash is an ordinary symbol in TeX, a/b; Chromium spaces it as an operator, "a / b"
    (re.compile(r"<mo>&#x0002F;</mo>"), '<mo lspace="0" rspace="0">&#x0002F;</mo>'),
]


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


def execute(notebook: str | Path, out_dir: Path, parameters: dict) -> Path:
    """Run a notebook (its name in notebooks/, or the path of a .ipynb file) with papermill, in
    notebooks/, into out_dir/<its name>.ipynb; returns that path. The kernel talks to papermill over
    IPC, Unix sockets in a temporary folder of their own (removed afterwards), not over TCP on
    localhost, which ipykernel warns is unencrypted, once per notebook."""
    import papermill
    from traitlets.config import Config

    src = Path(notebook) if str(notebook).endswith(".ipynb") else NOTEBOOK_DIR / f"{notebook}.ipynb"
    dst = out_dir / src.name
    with tempfile.TemporaryDirectory(prefix="kernel-") as sockets:
        # For IPC the connection's `ip` is the sockets' path prefix; left to its default it is a
        # relative "kernel-ipc", files in whatever folder each side runs in.
        ipc = Config(KernelManager={"transport": "ipc", "ip": str(Path(sockets) / "ipc")})
        if os.name != "posix":  # no Unix sockets (Windows): TCP on localhost, and its warning
            ipc = Config()
        papermill.execute_notebook(
            src,
            dst,
            parameters=parameters,
            kernel_name="python3",
            cwd=NOTEBOOK_DIR,
            progress_bar=False,
            request_save_on_cell_execute=True,  # keep what ran if a cell fails
            config=ipc,  # on to nbclient's NotebookClient, which gives it to its kernel manager
        )
    return dst


def tags(cell) -> set:
    return set(cell.metadata.get("tags", []))


def for_readers(nb, ipynb: Path):
    """The executed notebook `nb` (an nbformat node read from `ipynb`, changed in place and
    returned) as the exports show it: the Colab cell (the first code cell, the one that mentions
    google.colab), the `parameters` cell and papermill's `injected-parameters` cell make way for
    one Markdown box, "How this run was made" (how_this_run_was_made). A cell tagged `remove-cell`
    is left out; a code cell tagged `remove-input` shows its outputs without its code (the tags of
    Jupyter Book and of nbconvert's TagRemovePreprocessor, whose `transient` mark the HTML template
    reads). Each PNG output gets the width it was drawn at (its pixels over its recorded dpi, in
    CSS px of 1/96 in), so that a chart prints at its own size, fonts at their size (lib.plots),
    instead of at 96 pixels an inch. The .ipynb keeps every cell."""
    import base64
    import io

    from PIL import Image

    code = [c for c in nb.cells if c.cell_type == "code"]
    for out in (o for c in code for o in c.get("outputs", []) if "image/png" in o.get("data", {})):
        with Image.open(io.BytesIO(base64.b64decode(out.data["image/png"]))) as png:
            dpi, meta = (
                png.info.get("dpi", (0,))[0],
                out.setdefault("metadata", {}).setdefault("image/png", {}),
            )
            if dpi > 0 and "width" not in meta:  # a retina image has its width already
                meta["width"] = round(png.width * 96 / dpi)
    for cell in (c for c in code if "remove-input" in tags(c)):
        cell.metadata["transient"] = {"remove_source": True}
    colab = [c for c in code[:1] if "google.colab" in c.source]
    tagged = [c for c in code if {"parameters", "injected-parameters"} & tags(c)]
    replaced = {id(c) for c in colab + tagged}  # by identity: two cells may read the same
    if replaced:
        at = next(i for i, c in enumerate(nb.cells) if id(c) in replaced)
        nb.cells.insert(at, how_this_run_was_made(nb, ipynb, [c for c in code if id(c) not in replaced]))
    nb.cells = [c for c in nb.cells if id(c) not in replaced and "remove-cell" not in tags(c)]
    return nb


def how_this_run_was_made(nb, ipynb: Path, code: list):
    """A Markdown cell: every parameter of the executed notebook `nb` (papermill's injected value,
    else the parameters cell's default as papermill reads it from `ipynb`; bold where the run set
    it), the code's commit (results.CODE_COMMIT), the device (the "device: ..." line that one of
    the `code` cells printed, else the `device` parameter resolved here) and papermill's start
    time (UTC) and duration."""
    import ast

    import nbformat
    import papermill

    from lib import checkpoints

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
    streams = (o for c in code for o in c.get("outputs", []) if "text" in o)
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
    return nbformat.v4.new_markdown_cell(
        f"> **How this run was made.** Code at commit {commit}, run on {device}{when}. "
        "Parameters (bold: set for this run; the rest are the notebook's defaults): " + ", ".join(shown) + "."
    )


def tex_to_mathml(tex: str, display: bool) -> str:
    """MathML for the TeX of one equation (`display`: a block of its own), on one line, with
    every character Markdown would read in its text written as a character reference, so that it
    can stand in Markdown for the TeX. Raises ValueError for TeX that latex2mathml cannot convert,
    a command it does not know included (it would print it as text)."""
    from latex2mathml.converter import convert

    try:
        mathml = convert(tex, display="block" if display else "inline")
    except Exception as e:  # latex2mathml's errors derive from Exception alone
        raise ValueError(f"${tex}$: latex2mathml cannot convert it ({type(e).__name__}: {e})") from None
    text = re.findall(r">([^<]+)<", mathml)
    if unknown := [t for t in text if "\\" in t]:
        raise ValueError(f"${tex}$: latex2mathml does not know {', '.join(unknown)}")
    for pattern, mended in MATHML_MENDS:
        mathml = pattern.sub(mended, mathml)

    def inert(text: re.Match) -> str:
        return ">" + MARKDOWN_ACTIVE.sub(lambda c: f"&#{ord(c[0])};", text[1]) + "<"

    return re.sub(r">([^<]+)<", inert, mathml)


def markdown_math_to_mathml(markdown: str) -> str:
    """The Markdown with each $inline$ and $$display$$ equation as MathML (tex_to_mathml); code
    spans, fenced code blocks and backslash escapes (`\\$` is a dollar, `L\\*` an asterisk) stay as
    they are. Raises ValueError naming an equation that cannot be converted."""

    def convert(m: re.Match) -> str:
        if m["display"] is not None:
            return tex_to_mathml(m["display"], display=True)
        if m["inline"] is None:
            return m[0]  # an escape or a code span
        mathml = tex_to_mathml(m["inline"], display=False)
        if not m["before"] and not m["after"]:
            return mathml
        # Chromium breaks a line on either side of an inline equation, even after "(" or before
        # ")" and ",": the punctuation that touches an equation keeps to its line.
        return f'<span style="white-space: nowrap">{m["before"]}{mathml}{m["after"]}</span>'

    out, text, fence = [], [], None
    for line in markdown.splitlines(keepends=True):
        mark = FENCE.match(line)
        if fence is None and mark is None:
            text.append(line)
            continue
        if fence is None:  # a block opens: the text before it is done
            out.append(MARKDOWN_TEX.sub(convert, "".join(text)))
            text, fence = [], mark[1]
        elif mark and line.strip() == mark[1] and mark[1][0] == fence[0] and len(mark[1]) >= len(fence):
            fence = None  # it closes
        out.append(line)
    return "".join(out) + MARKDOWN_TEX.sub(convert, "".join(text))


def export_html(ipynb: Path, html_dir: Path) -> Path:
    """html_dir/<name>.html: the executed notebook as a reader gets it (for_readers), one file that
    stands alone: images embedded, the Markdown's equations as MathML (markdown_math_to_mathml;
    browsers draw MathML Core themselves), no script, no prompt numbers ("In [4]:" means nothing
    once cells are left out), READER_CSS for the equations and for paper. Raises ValueError naming
    the notebook and an equation that cannot be converted."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    nb = for_readers(nbformat.read(ipynb, as_version=4), ipynb)
    # MathML here, not in for_readers: which cells a reader sees and what they say holds for any
    # format of the notebook, while MathML is how HTML (and the PDF printed from it) shows TeX.
    try:
        for cell in (c for c in nb.cells if c.cell_type == "markdown"):
            cell.source = markdown_math_to_mathml(cell.source)
    except ValueError as e:
        raise ValueError(f"{ipynb.name}: {e}") from None
    exporter = HTMLExporter(
        extra_loaders=[DictLoader({"reader.html.j2": READER_TEMPLATE})],
        template_file="reader.html.j2",
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    body, _ = exporter.from_notebook_node(nb, resources={"reader_css": READER_CSS})
    return results.write_atomic(html_dir / f"{ipynb.stem}.html", lambda tmp: tmp.write_text(body, "utf-8"))


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def export_pdf(html: Path, pdf_dir: Path, chromium: str) -> Path:
    """pdf_dir/<name>.pdf: the HTML printed by a headless Chromium, offline, on A4 (READER_CSS)."""

    def print_to(tmp: Path) -> None:
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(
                [
                    chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", f"--user-data-dir={profile}", "--no-pdf-header-footer",
                    "--run-all-compositor-stages-before-draw",
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
    README shows, read without running anything. Replaces what was there, on purpose. The charts
    are those the run's last attempt drew (written since it started: an earlier attempt's chart
    of a photo the notebooks no longer show stays behind in the run folder), and the charts of
    figures/ that it did not draw are removed, so that figures/ holds one attempt's charts."""
    (figures_dir / "results").mkdir(parents=True, exist_ok=True)
    (figures_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    started = datetime.fromisoformat(results.load(run_dir / "pipeline.json")["attempts"][-1]["started"])
    charts = sorted(f for f in (run_dir / "figures").glob("*") if f.stat().st_mtime >= started.timestamp())
    copies = [(f, figures_dir / f.name) for f in charts]
    copies += [(f, figures_dir / "results" / f.name) for f in sorted((run_dir / "results").glob("*.json"))]
    copies += [(f, figures_dir / "notebooks" / f.name) for f in sorted((run_dir / "pdf").glob("*.pdf"))]
    copies.append((run_dir / "pipeline.json", figures_dir / "results" / "pipeline.json"))
    for src, dst in copies:
        results.write_atomic(dst, lambda tmp, src=src: shutil.copyfile(src, tmp))
    drawn = {f.name for f in charts}
    for old in (f for f in figures_dir.glob("*") if f.suffix in (".png", ".json") and f.name not in drawn):
        old.unlink()


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
