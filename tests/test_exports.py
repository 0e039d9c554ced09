"""The HTML and PDF exports (lib.pipeline): each HTML file stands alone, equations as MathML and no
script; cells hidden by tag; no prompt numbers; A4 paper; the kernel runs over IPC."""

import os
import re
import shutil
import tempfile
from pathlib import Path

import nbformat
import pypdfium2
import pytest
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath, markdown2html_mistune

from lib import exports, pipeline, results

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
SHELL_LINE = "python -m lib.pipeline --profile full --data /data/places365-val --set epochs=8 --no-pdf"


def equations(markdown: str) -> list[str]:
    """The TeX of every equation in the Markdown as nbconvert's own parser reads it (the one its
    MathJax exports used): the count to check the conversion against."""
    found = []

    class Counter(IPythonRenderer):
        def inline_math(self, body):
            found.append(body)
            return ""

        def block_math(self, body):
            found.append(body)
            return ""

    MarkdownWithMath(renderer=Counter(escape=False)).render(markdown)
    return found


def without_code(markdown: str) -> str:
    """The Markdown less its fenced blocks, code spans and escaped dollars."""
    markdown = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)
    return re.sub(r"`[^`]+`", "", markdown).replace("\\$", "")


def markdown_with_math() -> dict[str, list[str]]:
    """Each notebook's Markdown cells that hold a dollar."""
    return {
        path.stem: [
            c.source
            for c in nbformat.read(path, as_version=4).cells
            if c.cell_type == "markdown" and "$" in c.source
        ]
        for path in NOTEBOOKS
    }


def test_every_equation_of_the_notebooks_becomes_mathml_in_an_html_file_that_stands_alone(tmp_path):
    """Each notebook's equations, converted (none fails, none is left as TeX, one <math> each),
    exported, and the HTML copied alone into an empty folder: it names no script, no MathJax and
    nothing outside itself, and printed there with no network it shows the equations' symbols."""
    chapters = markdown_with_math()
    assert len(chapters) == 5 and all(chapters.values())  # every chapter has equations
    cells = [source for sources in chapters.values() for source in sources]
    total = 0
    for source in cells:
        converted = exports.markdown_math_to_mathml(source)
        assert "$" not in without_code(converted), source
        assert converted.count("<math") == len(equations(source)) > 0, source
        total += len(equations(source))
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell(s) for s in cells], metadata=KERNEL
    )
    nbformat.write(notebook, tmp_path / "equations.ipynb")
    html = exports.export_html(tmp_path / "equations.ipynb", tmp_path / "html")
    alone = tmp_path / "alone" / html.name
    alone.parent.mkdir()
    shutil.copy(html, alone)
    text = alone.read_text()
    assert text.count("<math") == total
    assert re.search(r'<math [^>]*display="block"', text)  # chapter 1's scaling
    assert "<script" not in text and "mathjax" not in text.lower()
    assert not re.search(r"""\bsrc=["'](?!data:)""", text) and "<link" not in text  # all inline
    assert not re.search(r"url\((?!data:)", text)  # the stylesheet's icons too
    chromium = exports.find_chromium()
    if chromium:
        pdf = exports.export_pdf(alone, tmp_path / "pdf", chromium)
        printed = "\n".join(page.get_textpage().get_text_range() for page in pypdfium2.PdfDocument(pdf))
        assert "ℓ" in printed and "∈" in printed and "\\frac" not in printed


def test_tex_in_markdown_becomes_mathml_and_the_markdown_around_it_stays():
    markdown = (
        "**L\\*** costs \\$5, `echo $HOME` and ``a $b$ c`` stay; the scale ($(a^*, b^*)/128$),\n"
        "then $x\n= 1$ across a line, and $$\\hat{\\mathbf{y}} \\in [-1, 1]$$ apart.\n\n"
        "```bash\necho $PATH $x$\n```\n\na lone $ here\n\nand $ there."
    )
    html = exports.markdown_math_to_mathml(markdown)
    assert html.startswith("**L\\*** costs \\$5, `echo $HOME` and ``a $b$ c`` stay; the scale ")
    assert "```bash\necho $PATH $x$\n```\n" in html
    assert "a lone $ here\n\nand $ there." in html  # math never spans a blank line
    assert html.count('display="inline"') == 2 and html.count('display="block"') == 1
    # the punctuation that touches an equation keeps to its line
    assert re.search(r'<span style="white-space: nowrap">\(<math[^$]*?</math>\),</span>', html)
    # asterisks and brackets inside are character references: no Markdown reads them
    maths = re.findall(r"<math.*?</math>", html, re.S)
    assert not any(c in m for m in maths for c in "*_[]()`\\") and "&#91;" in maths[-1]
    out = markdown2html_mistune(html)  # what nbconvert makes of it
    assert "<strong>L*</strong> costs $5" in out and "<em>" not in out
    assert "<code>echo $HOME</code>" in out and out.count("<math") == 3


def test_the_mathml_is_mended_where_chromium_draws_it_unlike_tex():
    """The hat sits on its letter (a circumflex overscript, not the ASCII caret as an accent), a
    minus after a bracket is a sign, a prime is not a superscript, a slash is not spaced."""
    hat = exports.tex_to_mathml(r"\hat{\mathbf{y}} \in [-1, 1]", display=True)
    assert "<mover><mrow><mi>&#x1D432;</mi></mrow><mo>&#x002C6;</mo></mover>" in hat
    assert "accent" not in hat and '<mo form="prefix">&#x02212;</mo><mn>1</mn>' in hat
    ratio = exports.tex_to_mathml(r"\log(w^\prime/w) - (1-\lambda)", display=False)
    assert "<mi>w</mi><mo>&#x02032;</mo>" in ratio and "msup" not in ratio
    assert '<mo lspace="0" rspace="0">&#x0002F;</mo>' in ratio
    assert ratio.count('form="prefix"') == 0  # both minus signs subtract


@pytest.mark.parametrize("tex", [r"\fracc{1}{2}", r"x^"])
def test_tex_that_cannot_be_converted_stops_the_export_with_its_source(tmp_path, tex):
    with pytest.raises(ValueError, match=re.escape(f"${tex}$")):
        exports.markdown_math_to_mathml(f"before ${tex}$ after")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"${tex}$")], metadata=KERNEL)
    nbformat.write(notebook, tmp_path / "bad.ipynb")
    with pytest.raises(ValueError, match=r"^bad\.ipynb: \$"):
        exports.export_html(tmp_path / "bad.ipynb", tmp_path / "html")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small notebook executed by pipeline.execute and exported to HTML: a cell tagged
    remove-cell, one tagged remove-input, a plain one, and a Markdown shell command of 88 columns."""
    tmp = tmp_path_factory.mktemp("tags")
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell(f"# Tags\n\n```bash\n{SHELL_LINE}\n```"),
            nbformat.v4.new_code_cell("print('set-up done')  # hidden", metadata={"tags": ["remove-cell"]}),
            nbformat.v4.new_code_cell(
                "print('a table')  # only its output", metadata={"tags": ["remove-input"]}
            ),
            nbformat.v4.new_code_cell("print('in full')  # source and output"),
        ],
        metadata=KERNEL,
    )
    nbformat.write(notebook, tmp / "tags.ipynb")
    (tmp / "run").mkdir()
    executed = pipeline.execute(str(tmp / "tags.ipynb"), tmp / "run", {})
    return executed, exports.export_html(executed, tmp / "run" / "html")


def test_cells_tagged_remove_cell_leave_the_exports_and_remove_input_keeps_only_the_output(exported):
    executed, html = exported
    text = html.read_text()
    assert "set-up done" not in text  # neither its source nor its output
    assert "a table" in text and "only its output" not in text
    assert "in full" in text and "source and output" in text
    kept = nbformat.read(executed, as_version=4).cells  # the executed notebook keeps every cell
    assert [c.outputs[0].text for c in kept[1:]] == ["set-up done\n", "a table\n", "in full\n"]
    assert "remove-cell" in kept[1].metadata.tags and "transient" not in kept[2].metadata


def test_the_html_shows_no_prompt_numbers(exported):
    text = exported[1].read_text()
    body = text[text.index("<body") :]  # the stylesheet speaks of prompts
    assert "In&nbsp;[" not in body and "In [" not in body and "Out[" not in body
    assert 'class="jp-InputPrompt' not in body and 'class="jp-OutputPrompt' not in body


def test_the_pdf_is_a4_and_a_shell_line_of_88_columns_fits(exported, tmp_path):
    chromium = exports.find_chromium()
    if not chromium:
        pytest.skip("no Chromium to print a PDF")
    doc = pypdfium2.PdfDocument(exports.export_pdf(exported[1], tmp_path, chromium))
    assert all(page.get_size() == pytest.approx((595.28, 841.89), abs=1) for page in doc)  # A4, in points
    printed = "\n".join(page.get_textpage().get_text_range() for page in doc)
    assert len(SHELL_LINE) == 88 and SHELL_LINE in [line.strip() for line in printed.splitlines()]


def test_the_kernel_runs_over_ipc_without_the_tcp_warning_and_leaves_no_socket_files(tmp_path, capfd):
    """No "running over TCP without encryption" per notebook: the kernel's sockets are files in a
    temporary folder of their own, gone after the run; nothing is left in notebooks/ (the kernel's
    working folder), the repository or here."""
    where = [ROOT, ROOT / "notebooks", Path.cwd()]
    before = {d: set(d.iterdir()) for d in where}
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "from ipykernel.kernelapp import IPKernelApp\n"
                "app = IPKernelApp.instance()\nprint(app.transport, app.ip)"
            )
        ],
        metadata=KERNEL,
    )
    nbformat.write(notebook, tmp_path / "ipc.ipynb")
    executed = pipeline.execute(str(tmp_path / "ipc.ipynb"), tmp_path, {})
    out, err = capfd.readouterr()  # the kernel's own output too: it writes to the same stderr
    assert "without encryption" not in out + err
    transport, ip = nbformat.read(executed, as_version=4).cells[0].outputs[0].text.split()
    assert transport == "ipc"
    assert Path(ip).is_relative_to(tempfile.gettempdir()) and not Path(ip).parent.exists()
    assert {d: set(d.iterdir()) for d in where} == before


def test_publish_leaves_figures_with_one_runs_charts_and_keeps_the_other_results(tmp_path):
    run, figures = tmp_path / "run", tmp_path / "figures"
    (run / "figures").mkdir(parents=True)
    (run / "figures" / "colorized_an_earlier_attempts_photo.png").write_text("earlier attempt")
    os.utime(run / "figures" / "colorized_an_earlier_attempts_photo.png", (1e9, 1e9))  # in 2001
    attempts = [{"started": "2001-09-09T01:46:40+00:00"}, {"started": results.now()}]
    results.save(run / "pipeline.json", profile="study", attempts=attempts)
    for sub, name in [("figures", "samples.png"), ("figures", "samples.json"), ("results", "resnet18.json"),
                      ("pdf", "03_ResNet18.pdf")]:  # fmt: skip
        (run / sub).mkdir(parents=True, exist_ok=True)
        (run / sub / name).write_text(f"new {name}")
    (figures / "results").mkdir(parents=True)
    for name in ("samples.png", "colorized_an_old_photo.png", "colorized_an_old_photo.json"):
        (figures / name).write_text("old")
    (figures / "results" / "bench_train.json").write_text("a benchmark, not the run's")
    pipeline.publish(run, figures)
    assert sorted(p.name for p in figures.glob("*.*")) == ["samples.json", "samples.png"]
    assert (figures / "samples.png").read_text() == "new samples.png"
    assert sorted(p.name for p in (figures / "results").iterdir()) == [
        "bench_train.json",
        "pipeline.json",
        "resnet18.json",
    ]
    assert (figures / "notebooks" / "03_ResNet18.pdf").read_text() == "new 03_ResNet18.pdf"
