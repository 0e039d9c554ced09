"""The notebooks: clean sources, consistent profiles, and a real headless run of all four."""

import base64
import importlib.util
import io
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from datetime import datetime
from pathlib import Path

import nbformat
import numpy as np
import papermill
import pytest
import yaml
from PIL import Image

from lib import checkpoints, colab, exports, metrics, notebook, pipeline, plots, results, splits

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_pipeline_runs_every_notebook_the_comparison_last():
    """Chapter 4 compares every model, so it runs after chapter 5, which trains the last one."""
    assert sorted(pipeline.NOTEBOOKS) == [p.stem for p in NOTEBOOKS]
    assert pipeline.NOTEBOOKS[-1] == "04_Comparison"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_committed_clean(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    assert "out_dir" in papermill.inspect_notebook(path)


def test_profiles_only_set_parameters_the_notebooks_declare():
    declared = {p.stem: set(papermill.inspect_notebook(p)) for p in NOTEBOOKS}
    everywhere = set().union(*declared.values())
    assert everywhere == set(notebook.PARAMETERS)  # what setup reads and a results file records
    for profile in (ROOT / "notebooks" / "profiles").glob("*.yaml"):
        values = yaml.safe_load(profile.read_text())
        for key, value in values.items():
            if isinstance(value, dict):
                assert key in declared, f"{profile.name}: no notebook {key}"
                assert set(value) <= declared[key], (
                    f"{profile.name}: {key} lacks {set(value) - declared[key]}"
                )
            else:
                assert key in everywhere, f"{profile.name}: no notebook declares {key}"


def test_colab_cells_and_badges_point_at_the_project():
    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    slug = url.removeprefix("https://github.com/")
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        first = json.loads(path.read_text())["cells"][1]
        assert url in "".join(first["source"]) and "google.colab" in "".join(first["source"])
        badge = f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/{path.name}"
        assert badge in readme, f"README lacks the Colab badge of {path.name}"


def test_parameters_merge_common_then_notebook_then_overrides():
    profile = {"dataset": "photos", "epochs": 3, "lr": 0.5, "01_OriginalCNN": {"epochs": 7}}
    got = pipeline.parameters_for("01_OriginalCNN", profile, {"lr": "0.1"})
    assert got == {"dataset": "photos", "epochs": 7, "lr": 0.1}  # in its declared type
    with pytest.raises(ValueError, match="no parameter not_a_parameter"):  # never dropped unseen
        pipeline.parameters_for("01_OriginalCNN", profile, {"not_a_parameter": 1})
    comparison = pipeline.parameters_for("04_Comparison", profile, {})
    assert "epochs" not in comparison and comparison["dataset"] == "photos"


def test_a_profile_without_data_stops_before_running_anything(tmp_path, capsys):
    assert pipeline.main(["--profile", "full", "--out", str(tmp_path / "run")]) == 1
    assert "needs a folder of photos" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """Thirty small colourful images, smooth gradients with a coloured disc, their parts named by
    their folders (so that no part of so few photos is empty): 20 train, 5 dev, 5 held-out."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:40, 0:40] / 40
    for i in range(30):
        c0, c1, c2 = rng.uniform(0, 255, (3, 3))
        img = c0 * (1 - x[..., None]) + c1 * x[..., None]
        img[(x - 0.5) ** 2 + (y - 0.5) ** 2 < rng.uniform(0.02, 0.1)] = c2
        part = root / ("train" if i < 20 else "dev" if i < 25 else "held-out")
        part.mkdir(exist_ok=True)
        Image.fromarray(img.astype(np.uint8)).save(part / f"photo_{i:02d}.png")
    return root


def tiny_profile(tmp_path, photo_folder, **extra) -> str:
    profile = {
        "dataset": str(photo_folder), "image_size": 32, "eval_size": 32, "epochs": 1, "seeds": [0, 1],
        "batch_size": 8, "workers": 0, "progress": False, "n_samples": 3, **extra,
    }  # fmt: skip
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(profile))
    return str(path)


MODEL_CHAPTERS = ["original_cnn", "edited_cnn", "resnet18", "resnet18-classification"]


def check_three_jobs(record: dict, photos: Path) -> None:
    """A model chapter's results: every run trained on the train part and chose its checkpoint on
    the dev part, and every reported score is of the held-out part, none of the dev part."""
    held_out = splits.part_files(photos, "held-out")[0]
    dev = set(splits.part_files(photos, "dev")[0])
    assert record["parts"] == notebook.JOBS and record["scored_on"]["part"] == "held-out"
    assert record["scored_on"]["files"] == held_out and not dev & set(held_out)
    for run in record["runs"].values():
        assert run["data"]["parts"] == {"train": "train", "val": "dev"}
        assert run["data"]["n_val"] == len(dev) and run["data"]["n_train"] == len(
            splits.part_files(photos, "train")[0]
        )
    for scores in [
        record["gray baseline"],
        *(s for seeds in record["rows"].values() for s in seeds.values()),
    ]:
        assert scores["files"] == held_out and not dev & set(scores["files"])
        assert all(len(v) == len(held_out) for v in scores["per_image"].values())


@pytest.mark.slow
def test_all_notebooks_run_headlessly_and_write_results_charts_and_exports(tmp_path, photo_folder):
    out = pipeline.run(tiny_profile(tmp_path, photo_folder), tmp_path / "run", pdf=True)
    for name in MODEL_CHAPTERS:
        res = json.loads((out / "results" / f"{name}.json").read_text())
        check_three_jobs(res, photo_folder)
        assert list(res["runs"]) == ["0", "1"] and res["runs"]["0"]["history"][0]["epoch"] == 1
        for seeds in res["rows"].values():
            assert list(seeds) == ["0", "1"]
            assert all(math.isfinite(s[k]) for s in seeds.values() for k in metrics.METRICS)
        assert res["params"]["dataset"] == str(photo_folder) and res["params"]["epochs"] == 1
        chapter = {"original_cnn": "01_OriginalCNN", "edited_cnn": "02_EditedCNN", "resnet18": "03_ResNet18"}
        declared = papermill.inspect_notebook(
            ROOT / "notebooks" / f"{chapter.get(name, '05_Classification')}.ipynb"
        )
        assert set(res["params"]) == set(declared)  # the parameters, not IPython's In or another cell's names
        assert res["provenance"]["git_commit"]
    classification = json.loads((out / "results" / "resnet18-classification.json").read_text())
    assert set(classification["rows"]) == {"faithful", "default"}
    resnet = json.loads((out / "results" / "resnet18.json").read_text())
    heads = classification["heads"]
    assert set(heads["models"]) == {"ResNet18", "ResNet18, classification head (faithful)",
                                    "ResNet18, classification head (default)"}  # fmt: skip
    comparison = json.loads((out / "results" / "comparison.json").read_text())
    summary = comparison["summary"]
    assert set(summary["models"]) == {"OriginalCNN", "EditedCNN", *heads["models"]}
    assert summary["n_photos"] == 5 and all(len(s) == 2 for s in summary["seeds"].values())
    assert summary["models"]["ResNet18"]["auc"]["per_seed"] == {
        s: pytest.approx(resnet["rows"][""][s]["auc"]) for s in ("0", "1")
    }  # the chapters' held-out scores, not scores of its own
    assert set(comparison["reference"]["vs_gray"]) == {plots.REFERENCE}
    assert comparison["reference_checkpoint"]["sha256"] == checkpoints.REFERENCE_SHA256
    charts = [
        "lab_channels", "loss_original_cnn", "samples_original_cnn", "edited_cnn_bug",
        "loss_edited_cnn", "loss_cnn_before_after", "samples_cnn_before_after", "loss_resnet18",
        "resnet18_checkpoints", "samples_resnet18", "margins", "samples",
        "original_chart_one_scale",
    ]  # fmt: skip
    charts += [p.stem for p in (out / "figures").glob("colorized_*.png")]  # whole held-out photos
    assert len(charts) == 15
    charts += ["colour_bins", "samples_heads", "vividness"]
    charts += [p.stem for p in (out / "figures").glob("heads_*.png")]
    assert len(charts) == 20
    for chart in charts:
        assert (out / "figures" / f"{chart}.png").stat().st_size > 1000
        json.loads((out / "figures" / f"{chart}.json").read_text())  # the data behind it
    for nb in pipeline.NOTEBOOKS:
        html = (out / "html" / f"{nb}.html").read_text()
        assert "data:image/png;base64" in html  # images embedded
        assert "<math" in html and "<script" not in html and "mathjax" not in html.lower()  # alone
        assert "In&nbsp;[" not in html  # no prompt numbers
        assert "google.colab" not in html and html.count("How this run was made") == 1  # for readers
    exported = sorted(p.name for p in (out / "html").iterdir())
    assert exported == sorted(f"{nb}.html" for nb in pipeline.NOTEBOOKS)  # nothing beside them
    # The commands the chapters show can be copied: no doubled backslash, and every file they name
    # (this run's checkpoints, the embedded photos) is there.
    for nb in ("03_ResNet18", "05_Classification"):
        executed = nbformat.read(out / f"{nb}.ipynb", as_version=4)
        outputs = [
            o.get("data", {}).get("text/markdown", "") for c in executed.cells for o in c.get("outputs", [])
        ]
        blocks = [o.split("```bash\n")[1].split("```")[0] for o in outputs if "```bash" in o]
        assert blocks, nb
        for block in blocks:
            assert "\\\\" not in block
            words = [
                w
                for line in block.replace("\\\n", " ").splitlines()
                for w in shlex.split(line, comments=True)
            ]
            named = [w for w in words if w.endswith(".pt") or w.startswith(("data/", "runs/", "/"))]
            assert named and all((pipeline.REPO / w).exists() for w in named), (nb, named)
    if exports.find_chromium():  # CI machines may have none: then the run prints a line instead
        for nb in pipeline.NOTEBOOKS:
            assert (out / "pdf" / f"{nb}.pdf").read_bytes().startswith(b"%PDF")

    # Notebook 5 reads notebook 3's finished runs, never trains into them: asked for more epochs
    # than 3 ran, it stops with one clear line and 3's runs stay as they were.
    last = out / "checkpoints" / "resnet18" / "seed-0" / "last.pt"
    kept = last.read_bytes()
    profile = yaml.safe_load(Path(tiny_profile(tmp_path, photo_folder)).read_text())
    params = pipeline.parameters_for("05_Classification", profile, {"epochs": 2, "out_dir": str(out)})
    (tmp_path / "again").mkdir()
    with pytest.raises(papermill.PapermillExecutionError, match="notebook 3 ran with epochs=1"):
        pipeline.execute("05_Classification", tmp_path / "again", params)
    assert last.read_bytes() == kept

    # The same run folder again, as a session that was cut short would: the pipeline continues it,
    # every training run is found finished (nothing retrained) and the results are the same.
    checkpoints_before = {p: p.stat().st_mtime_ns for p in (out / "checkpoints").rglob("*.pt")}
    again = pipeline.run(tiny_profile(tmp_path, photo_folder), out, pdf=False)
    assert {p: p.stat().st_mtime_ns for p in (out / "checkpoints").rglob("*.pt")} == checkpoints_before
    assert json.loads((again / "results" / "comparison.json").read_text())["summary"] == summary
    assert len(json.loads((out / "pipeline.json").read_text())["attempts"]) == 2
    with pytest.raises(
        FileExistsError, match="continue it with the same ones"
    ):  # the profile's values changed
        pipeline.run(tiny_profile(tmp_path, photo_folder, epochs=2), out, pdf=False)
    assert len(json.loads((out / "pipeline.json").read_text())["attempts"]) == 2  # and nothing ran


@pytest.mark.slow
def test_a_failing_notebook_stops_the_run_and_names_the_cell(tmp_path, photo_folder, capsys):
    """A failure no parameter check can foresee: every train photo passes the header check at
    start-up and fails while decoding (black and white, saved as RGB), so training stops."""
    photos = tmp_path / "photos"
    shutil.copytree(photo_folder, photos)
    for f in (photos / "train").iterdir():
        Image.open(f).convert("L").convert("RGB").save(f)
    profile = tiny_profile(tmp_path, photos)
    code = pipeline.main(["--profile", profile, "--out", str(tmp_path / "run"), "--no-pdf"])
    err = capsys.readouterr().err
    assert code == 1
    assert re.search(r"01_OriginalCNN failed in cell \d+ \(ValueError: .*no training image", err), err
    partial = json.loads((tmp_path / "run" / "01_OriginalCNN.ipynb").read_text())
    ran = [c for c in partial["cells"] if c["cell_type"] == "code" and c["execution_count"]]
    assert len(ran) >= 4  # the cells before the failure kept their outputs
    assert not (tmp_path / "run" / "02_EditedCNN.ipynb").exists()


@pytest.mark.slow
def test_the_full_profile_runs_end_to_end_at_its_real_sizes(tmp_path):
    """The GPU server's path (make run PROFILE=full) at its real image sizes, 256 and 224 px, with
    tiny counts: a change that breaks it fails here, on a CPU, before it meets a GPU."""
    photos = tmp_path / "photos"
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:300, 0:320] / 300
    for i in range(10):  # 6 train, 2 dev, 2 held-out photos
        part = photos / ("train" if i < 6 else "dev" if i < 8 else "held-out")
        part.mkdir(parents=True, exist_ok=True)
        c0, c1 = rng.uniform(0, 255, (2, 3))
        img = c0 * (1 - x[..., None]) + c1 * x[..., None] + 30 * np.sin(8 * y)[..., None]
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(part / f"p{i}.jpg", quality=90)
    overrides = {"dataset": str(photos), "max_images": 10, "epochs": 1, "batch_size": 4}
    overrides |= {"n_samples": 2, "workers": 0}
    out = pipeline.run("full", tmp_path / "run", overrides, pdf=False)
    comparison = json.loads((out / "results" / "comparison.json").read_text())
    assert comparison["params"]["eval_size"] == 256 and comparison["summary"]["n_photos"] == 2
    for name, size in [("original_cnn", 256), ("edited_cnn", 256), ("resnet18", 224)]:
        record = json.loads((out / "results" / f"{name}.json").read_text())
        assert record["params"]["image_size"] == size and record["runs"]["0"]["data"]["size"] == size
    heads = json.loads((out / "results" / "resnet18-classification.json").read_text())["heads"]
    assert all(math.isfinite(v["mean"]) for m in heads["vs_gray"].values() for v in m.values())
    assert len(list((out / "html").glob("*.html"))) == 5


def test_the_colab_cell_clones_the_project_and_lib_imports_from_the_clone(tmp_path):
    """The first cell (at most ten lines), run where `google.colab` is importable (a stub), with
    its repository URL pointing at this clone and its folder in tmp_path: it clones, finds
    nothing to install (the packages are here, and there is no network), works in the clone's
    notebooks/ folder and imports `lib` from the clone; a URL that cannot be cloned stops it with
    one line that says what to do."""
    cells = {"".join(json.loads(p.read_text())["cells"][1]["source"]) for p in NOTEBOOKS}
    assert len(cells) == 1  # the same cell in every notebook
    cell = cells.pop()
    assert len(cell.splitlines()) <= 10
    assert all(importlib.util.find_spec(m) for m in colab.NEEDED)  # so the clone installs nothing
    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    stub = tmp_path / "stub" / "google" / "colab"
    stub.mkdir(parents=True)
    (stub.parent / "__init__.py").write_text("")
    (stub / "__init__.py").write_text("")

    def run(repository, home):
        script = "import google.colab\n" + cell.replace(url, str(repository)).replace(
            "/content/project", str(home)
        )
        script += "\nimport lib.data, os\nprint(lib.data.__file__, os.getcwd())"
        env = {**os.environ, "PYTHONPATH": str(tmp_path / "stub")}
        return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300)  # fmt: skip

    home = tmp_path / "content" / "project"
    done = run(ROOT, home)
    assert done.returncode == 0, done.stderr[-2000:]
    imported, cwd = done.stdout.split()
    assert Path(imported).is_relative_to(home) and Path(cwd) == home / "notebooks"
    assert (home / "lib" / "weights" / "reference.pt").is_file()  # the clone carries the model
    failed = run(tmp_path / "no-such-repository", tmp_path / "elsewhere")
    assert (
        failed.returncode != 0
        and "could not clone" in failed.stderr
        and "upload the project" in failed.stderr
    )


def test_exports_show_how_the_run_was_made_instead_of_the_colab_and_parameter_cells(tmp_path):
    """A chapter run by papermill, exported: the Colab cell, the `parameters` cell and papermill's
    injected cell are gone from the HTML, one box in their place gives the parameters (the
    injected value over the default), the commit, the device the set-up printed and the time; a
    chart prints at the size it was drawn; the executed notebook keeps every cell."""
    colab = "# In Google Colab: fetch the project\nimport sys\nif 'google.colab' in sys.modules:\n    pass"
    chapter = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# A chapter"),
            nbformat.v4.new_code_cell(colab),
            nbformat.v4.new_code_cell(
                'epochs = 8  # passes over the data\nlr = 0.001\ndevice = "auto"',
                metadata={"tags": ["parameters"]},
            ),
            nbformat.v4.new_code_cell('print(f"device: cpu; {epochs} epochs at lr {lr}")'),
            nbformat.v4.new_code_cell(  # a chart 3 in wide at 150 dpi: 3.2 in with the 0.1 in padding
                "import matplotlib.pyplot as plt\nfig = plt.figure(figsize=(3, 2), dpi=150)\n"
                "ax = fig.add_axes((0, 0, 1, 1))\nax.imshow([[0, 1], [1, 0]], aspect='auto')\nax.axis('off');"
            ),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    nbformat.write(chapter, tmp_path / "chapter.ipynb")
    executed = tmp_path / "run" / "chapter.ipynb"
    executed.parent.mkdir()
    pipeline.execute(str(tmp_path / "chapter.ipynb"), executed.parent, {"epochs": 2})
    html = exports.export_html(executed, tmp_path / "html").read_text()
    assert "google.colab" not in html
    assert "# passes over the data" not in html  # the parameters cell (its comment)
    assert "# Parameters" not in html  # papermill's injected cell (its comment)
    start = html.index("How this run was made")
    box = html[start : html.index("</blockquote>", start)]
    assert (
        "<code>epochs=2</code>" in box
        and "<code>lr=0.001</code>" in box
        and "<code>device='auto'</code>" in box
    )
    assert results.CODE_COMMIT[:12] in box and "cpu" in box
    ran = datetime.fromisoformat(nbformat.read(executed, as_version=4).metadata.papermill.start_time)
    assert f"{ran:%Y-%m-%d %H:%M:%S} UTC" in box
    assert html.index("A chapter") < start < html.index("2 epochs at lr 0.001")  # where the cells were
    kept = nbformat.read(executed, as_version=4).cells
    with Image.open(io.BytesIO(base64.b64decode(kept[-1].outputs[0].data["image/png"]))) as png:
        assert png.width == pytest.approx(3.2 * 150, abs=2)
        css = round(png.width * 96 / 150)  # CSS px are 1/96 in: printed 3.2 in wide, as drawn
    assert re.search(rf'<img [^>]*src="data:image/png;base64,[^"]+" width="{css}"', html)
    assert len(kept) == 6 and "google.colab" in kept[1].source  # the injected cell added, none removed


def test_a_profile_with_a_data_set_name_passes_the_pipelines_check():
    pipeline.check_dataset({"dataset": None}, {"dataset": "places365-val"}, "full")  # fetched later
    with pytest.raises(FileNotFoundError, match="nor a data set name .*places205-test"):
        pipeline.check_dataset({"dataset": None}, {"dataset": "places366"}, "full")


def test_a_folder_that_holds_no_pipeline_run_is_never_continued(tmp_path):
    """--out naming a folder of something else (a user's files, a lib.train run) is refused, and
    nothing in it is touched; an empty or missing folder starts a new run."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("not a run")
    with pytest.raises(FileExistsError, match="holds no pipeline run"):
        pipeline.run("quick", mine, pdf=False)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    fresh = pipeline.start_or_continue(tmp_path / "new", "quick", {"epochs": 1}, {"out_dir": "x"})
    assert fresh == {
        "profile": "quick",
        "parameters": {"epochs": 1},
        "overrides": {"out_dir": "x"},
        "attempts": [],
    }
