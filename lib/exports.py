"""The notebooks as a reader sees them: HTML that stands alone (images embedded, equations as
MathML, no script) and an A4 PDF printed from it by a headless Chromium.

The exports show a notebook as a reader needs it (for_readers): a cell tagged `remove-cell` is
left out, a code cell tagged `remove-input` shows its outputs without its code (the tags of
Jupyter Book and nbconvert's TagRemovePreprocessor); the executed notebook keeps every cell.
lib.pipeline exports every notebook it runs; `export_html` and `export_pdf` work on any
executed notebook.
"""

import re
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from lib import results

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
