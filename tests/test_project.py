"""The project's own promises: one dependency list, the two README commands, CI calls the tests."""

import ast
import inspect
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lib import checkpoints, metrics, pipeline, splits, study, train
from lib.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


# Where each table lives: README is the five-minute read, the model's own page holds its full
# model card, the results folder's page holds the experiments behind notebook 5.
README = ROOT / "README.md"
MODEL_CARD = ROOT / "lib" / "weights" / "README.md"
RESULTS_PAGE = ROOT / "figures" / "results" / "README.md"


def result(name: str) -> dict:
    return json.loads((ROOT / "figures" / "results" / name).read_text())


def conda_pip_list() -> list[str]:
    """The `- pip:` list of environment.yml (no YAML parser needed for this flat list)."""
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    items = []
    for line in lines[start + 1 :]:
        if not line.startswith("      - "):
            break
        items.append(line.strip()[2:])
    return items


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    assert sorted(conda_pip_list()) == sorted(wanted)
    assert "torch==2.14.1" in wanted and "torchvision==0.29.1" in wanted


def test_readme_names_the_two_commands_and_ci_runs_the_tests():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run: \$\(VENV\)/\.installed", makefile, re.M)
    assert re.search(r"^test: \$\(VENV\)/\.installed", makefile, re.M)


def test_readme_is_a_five_minute_read():
    """README stays short (at most 2,500 words, as `str.split` counts them); the rest lives on
    the model's and the results' own pages, which README links to."""
    text = README.read_text()
    assert len(text.split()) <= 2500, f"README.md: {len(text.split())} words, at most 2,500"
    assert "](lib/weights/README.md)" in text and "](figures/results/README.md)" in text


def test_readme_pages_link_only_to_files_that_exist():
    """Every relative link or image of the three Markdown pages points at a file of the project."""
    for page in (README, MODEL_CARD, RESULTS_PAGE):
        targets = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
        local = [t.split("#")[0] for t in targets if "://" not in t and not t.startswith("#")]
        assert local, f"{page}: no relative links"
        missing = [t for t in local if not (page.parent / t).exists()]
        assert not missing, f"{page.relative_to(ROOT)}: links to missing files: {missing}"


def test_readme_opens_its_results_with_the_studys_answer():
    """README's answer, its table and its chart are the study run's (figures/results/, published
    by `make figures`): the sentences lib.study wrote from the numbers, not words of README's own;
    the study's PDF exports are committed beside them, and the quick run's record too."""
    comparison, record = result("comparison.json"), result("pipeline.json")
    assert record["profile"] == "study" and comparison["params"]["dataset"] == "photos"
    readme = README.read_text()
    results = readme[readme.index("## Results") :]
    assert results.index(study.answer(comparison["summary"])) < results.index("![")
    assert "](figures/margins.png)" in results
    assert study.table(comparison["summary"], comparison["reference"]) in readme
    pdfs = sorted((ROOT / "figures" / "notebooks").glob("*.pdf"))
    assert [p.stem for p in pdfs] == sorted(pipeline.NOTEBOOKS) and sum(p.stat().st_size for p in pdfs) < 12e6
    assert all(f"](figures/notebooks/{p.name})" in readme for p in pdfs)
    quick = result("quick-pipeline.json")  # README's "under ten minutes", measured on 2 cores
    assert quick["profile"] == "quick" and sum(quick["attempts"][0]["seconds"].values()) < 600
    assert f"{quick['parameters']['max_images']} of the embedded train photos" in " ".join(readme.split())
    params = result("resnet18.json")["params"]  # the recipe, shared by every model (notebook 5 checks it)
    n_train = result("resnet18.json")["runs"]["0"]["data"]["n_train"]
    n_photos, size = comparison["summary"]["n_photos"], params["eval_size"]
    recipe = [f"on the {n_train:,} train photos", f"{params['image_size']}-px random crops",
              f"peaking at {params['lr']:g}", f"batch {params['batch_size']}", f"{params['epochs']} epochs",
              f"the {n_photos} held-out photos at {size} px"]  # fmt: skip
    assert params["seeds"] == [0, 1, 2] and all(r in " ".join(results.split()) for r in recipe), recipe
    minutes = [sum(a["seconds"].values()) / 60 for a in record["attempts"]]
    assert f"The study took {minutes[0]:.0f} minutes on 2 CPU cores" in readme


def test_results_readme_heads_tables_are_the_evaluation_on_real_photos():
    """The two heads' scores on real photos (figures/results/README.md) come from what
    `python -m lib.evaluate` wrote."""
    record = result("heads_photos.json")
    readme = RESULTS_PAGE.read_text()
    assert metrics.format_table(record["metrics"], markdown=True) in readme
    assert record["protocol"] == {"resize": 256, "crop": 256}
    assert all(r["n_images"] == 264 for r in record["metrics"].values())
    for name in ("heads_photos_30.json", "heads_photos_rebalance.json"):
        more = result(name)
        assert metrics.format_table(more["metrics"], markdown=True) in readme
        assert more["protocol"] == record["protocol"] and more["data"] == record["data"]
    again = result("heads_photos_rebalance.json")
    for name, row in record["metrics"].items():  # README: the same checkpoints, scored again
        assert {k: v for k, v in again["metrics"][name].items() if k != "seconds"} == {
            k: v for k, v in row.items() if k != "seconds"
        }
    dev = result("crops_photos_dev.json")
    assert metrics.format_table(dev["metrics"], markdown=True) in readme
    assert all(r["n_images"] == 237 for r in dev["metrics"].values())
    for head in ("mse", "classes"):  # the development runs: same settings but the crop size
        runs = [result(f"photos_dev_resnet18_{head}_{crop}.json") for crop in (64, 96)]
        assert [r["data"]["size"] for r in runs] == [64, 96] and runs[0]["settings"] == runs[1]["settings"]
        assert all(r["data"]["n_train"] == 2137 for r in runs)
    run = result("photos_resnet18_classes_lambda1.json")
    assert run["options"] == {"head": "classification", "rebalance": 1.0}
    assert run["settings"]["epochs"] == 12 and run["data"]["n_train"] == 2375


def verdict(ok: bool, met: str = "met") -> str:
    """A targets table's last column: `met` (as that table writes it) or **not met**."""
    return met if ok else "**not met**"


def test_results_readme_targets_of_issue_6_are_computed_from_the_heads_evaluation():
    m = result("heads_photos.json")["metrics"]
    mse, cls, gray = m["resnet18"], m["resnet18 (classification)"], m["gray baseline"]

    cf, dcf = cls["colourfulness"] / mse["colourfulness"], cls["delta_cf"] / mse["delta_cf"]
    rows = [
        f"| classification colourfulness ≥ 1.5× the MSE head's | {cls['colourfulness']:.1f} vs "
        f"{mse['colourfulness']:.1f}: **{cf:.2f}×** | {verdict(cf >= 1.5)} |",
        f"| classification AuC ≥ the gray baseline's | **{cls['auc']:.4f}** vs {gray['auc']:.4f} | "
        f"{verdict(cls['auc'] >= gray['auc'])} |",
        f"| classification ΔCF ≤ half the MSE head's | {cls['delta_cf']:.1f} vs {mse['delta_cf']:.1f}: "
        f"**{dcf:.2f}×** | {verdict(dcf <= 0.5)} |",
    ]
    page = RESULTS_PAGE.read_text()
    assert all(row in page for row in rows), [row for row in rows if row not in page]


@pytest.mark.parametrize("page", [README, RESULTS_PAGE], ids=["README", "results-page"])
def test_readme_speed_figures_are_the_benchmarks(page):
    """README's speed table and the full one on the results page both show the benchmarks' files."""
    bench = result("bench_colorize.json")
    readme = page.read_text()
    assert f"**{bench['big']['seconds']:.2f} s**" in readme
    assert f"**{bench['big']['peak_rss_mb']:.0f} MB**" in readme
    assert f"**{bench['folder']['images_per_s']:.1f} photos/s**" in readme
    pipe = result("bench_pipeline.json")
    assert f"**{pipe['ours_images_per_s']:.0f} images/s** vs {pipe['original_images_per_s']:.0f}" in readme
    assert f"**{pipe['ratio']:.1f}×**" in readme
    mem = result("bench_memory.json")
    assert f"**{mem['growth_mb']:+.0f} MB**" in readme and mem["growth_mb"] < 100
    assert all(f"**{r['peak_rss_mb']:.0f} MB**" in readme for r in mem["rows"])
    train = result("bench_train.json")
    assert len(train["rows"]) == 9 and all(f"**{r['images_per_s']:.1f}**" in readme for r in train["rows"])
    lab = result("bench_lab.json")
    assert (
        f"**{lab['lib_ms_per_image']:.2f} ms/image**" in readme
        and f"**{lab['ratio']:.1f}× faster**" in readme
    )


@pytest.mark.slow
def test_results_record_the_commit_that_was_imported_not_a_later_one(tmp_path):
    """A commit made while a run goes on must not be claimed by the run's results."""
    repo = tmp_path / "repo"
    (repo / "lib").mkdir(parents=True)
    (repo / "lib" / "__init__.py").write_text("")
    (repo / "lib" / "results.py").write_text((ROOT / "lib" / "results.py").read_text())

    def git(*args):
        ident = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
        return subprocess.run(["git", *ident, *args], cwd=repo, check=True, capture_output=True, text=True)

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "first")
    first = git("rev-parse", "HEAD").stdout.strip()
    script = (
        "import subprocess, lib.results as r\n"
        "open('lib/__init__.py', 'a').write('# edited while running\\n')\n"
        "subprocess.run(['git', '-c', 'user.name=t', '-c', 'user.email=t@t', '-c', 'commit.gpgsign=false',"
        " 'commit', '-qam', 'second'], check=True)\n"
        "print(r.__file__, r.provenance('cpu', r.now())['git_commit'], r.git_commit())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=repo, check=True, capture_output=True, text=True)
    module, recorded, now = out.stdout.split()
    assert module == str(repo / "lib" / "results.py")  # the copy, not the project's own
    assert recorded == first and now == git("rev-parse", "HEAD").stdout.strip() != first


def test_readme_reference_model_figures_are_its_held_out_and_dev_evaluations():
    """The shipped model's numbers in README come from `python -m lib.evaluate` on the held-out
    part of the split only; its settings were chosen on the dev part (the tables of its model
    card, lib/weights/README.md); it trained >= 90 minutes."""
    from lib import datasets

    readme, card = README.read_text(), MODEL_CARD.read_text()
    split = ROOT / "data" / "splits" / "photos.tsv"
    _, rows = splits.read_split(split)
    held = result("reference_heldout.json")
    assert metrics.format_table(held["metrics"], markdown=True) in readme
    assert held["split"] == {
        "file": "data/splits/photos.tsv",
        "sha256": datasets.sha256(split),
        "part": "held-out",
    }
    assert held["protocol"] == {"resize": 256, "crop": 256}
    assert all(r["n_images"] == sum(p == "held-out" for p, *_ in rows) for r in held["metrics"].values())
    assert {c["sha256"] for c in held["checkpoints"].values()} == {checkpoints.REFERENCE_SHA256}
    dev_files = ["reference_dev_vividness.json", "reference_dev_vividness_fine.json"]
    for name in [*dev_files, "reference_candidates_dev.json"]:
        dev = result(name)
        assert dev["split"]["part"] == "dev" and metrics.format_table(dev["metrics"], markdown=True) in card
    run = result("reference_train.json")
    assert run["data"]["n_train"] == 6015 and run["data"]["split"]["sha256"] == datasets.sha256(split)
    assert sum(h["seconds"] for h in run["history"]) >= 90 * 60
    minutes = f"{sum(h['seconds'] for h in run['history']) / 60:.0f} minutes"
    assert minutes in readme and minutes in card


def test_readme_targets_of_issue_11_are_computed_from_the_held_out_evaluation():
    """The model card's met / not met table: every number and verdict from reference_heldout.json."""
    m = result("reference_heldout.json")["metrics"]
    faithful, default, gray = m["reference (vividness 0)"], m["reference (vividness 0.1)"], m["gray baseline"]

    cf, dcf = default["colourfulness"] / default["colourfulness_true"], default["delta_cf"] / gray["delta_cf"]
    met = "**met**"  # this table writes both verdicts in bold
    rows = [
        f"| faithful: AuC ≥ gray's + 0.015 | {faithful['auc']:.4f} vs {gray['auc']:.4f}: "
        f"{faithful['auc'] - gray['auc']:+.4f} | {verdict(faithful['auc'] - gray['auc'] >= 0.015, met)} |",
        f"| faithful: PSNR ≥ gray's + 0.5 dB | {faithful['psnr']:.2f} vs {gray['psnr']:.2f} dB: "
        f"{faithful['psnr'] - gray['psnr']:+.2f} | {verdict(faithful['psnr'] - gray['psnr'] >= 0.5, met)} |",
        f"| default: colourfulness ≥ 0.8 × the photos' own | {default['colourfulness']:.1f} vs "
        f"{default['colourfulness_true']:.1f}: {cf:.2f}× | {verdict(cf >= 0.8, met)} |",
        f"| default: ΔCF ≤ 0.4 × gray's | {default['delta_cf']:.1f} vs {gray['delta_cf']:.1f}: {dcf:.2f}× | "
        f"{verdict(dcf <= 0.4, met)} |",
        f"| default: AuC ≥ gray's − 0.005 | {default['auc']:.4f} vs {gray['auc']:.4f}: "
        f"{default['auc'] - gray['auc']:+.4f} | {verdict(default['auc'] - gray['auc'] >= -0.005, met)} |",
    ]
    card = MODEL_CARD.read_text()
    assert all(row in card for row in rows), [row for row in rows if row not in card]


@pytest.mark.slow
def test_inference_imports_no_training_code():
    """colorize, evaluate and the notebooks' set-up load and use models without lib.train (and
    so without the training loop, DDP and its progress bars)."""
    code = "import sys, lib.colorize, lib.evaluate, lib.notebook; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    loaded = done.stdout.split()
    assert "lib.checkpoints" in loaded and "lib.train" not in loaded


def test_readme_training_curve_of_the_reference_model_is_its_results_file():
    """The model card's "where the curve flattens" table (lib/weights/README.md)."""
    record = result("reference_dev_epochs.json")
    rows, gray = record["metrics"], record["metrics"]["gray baseline"]["auc"]
    readme = MODEL_CARD.read_text()
    faithful_rows = [k for k in record["checkpoints"] if k.endswith("(vividness 0)")]
    assert len(faithful_rows) == 6
    for name in faithful_rows:
        epoch, val = re.search(r"epoch-(\d+)-val-([\d.]+)\.pt", record["checkpoints"][name]["path"]).groups()
        faithful, default = rows[name], rows[name.replace("(vividness 0)", "(vividness 0.1)")]
        cf = default["colourfulness"]
        row = f"| {int(epoch)} | {float(val):.4f} | {faithful['auc']:.4f} (+{faithful['auc'] - gray:.4f}) | "
        row += f"{cf:.1f} ({cf / default['colourfulness_true']:.2f}×) |"
        assert row in readme


def pilot_table() -> str:
    """The study pilot's seconds per epoch (figures/results/study_pilot_*.json) as the Markdown
    table of figures/results/README.md."""
    rows = result("study_pilot_fp32.json")["rows"] + result("study_pilot_bf16.json")["rows"]
    columns = [(False, 64), (False, 96), (True, 64)]
    names = list(dict.fromkeys(r["model"] for r in rows))
    cell = {(r["model"], r["bf16"], r["size"]): r["seconds_per_epoch"] for r in rows}
    lines = ["| network | float32, 64 px | float32, 96 px | bfloat16, 64 px |", "|---|---:|---:|---:|"]
    lines += [f"| {n} | " + " | ".join(f"{cell[n, b, s]:.1f}" for b, s in columns) + " |" for n in names]
    totals = [sum(cell[n, b, s] for n in names) for b, s in columns]
    return "\n".join([*lines, "| all four | " + " | ".join(f"{t:.1f}" for t in totals) + " |"])


def test_the_study_pilots_table_is_its_results_files():
    """How the study's crop size, epochs and precision were chosen: the pilot's measured seconds."""
    assert pilot_table() in RESULTS_PAGE.read_text()


def study_run_text() -> str:
    """What figures/results/README.md says of the study run, from its files: each attempt's commit
    and minutes, and the epoch the dev part chose for each run."""
    first, *later = result("pipeline.json")["attempts"]
    minutes = ", ".join(f"{nb[:2]} {s / 60:.0f}" for nb, s in first["seconds"].items())
    lines = [
        f"The first attempt ran at commit `{first['code'][:7]}` with uncommitted changes"
        if first["code"].endswith("-dirty")
        else f"The first attempt ran at commit `{first['code'][:7]}`",
        f"and took {sum(first['seconds'].values()) / 60:.0f} minutes (notebooks {minutes}).",
    ]
    if later:
        commits = ", ".join(f"`{a['code'][:7]}`" for a in later)
        seconds = sum(s for a in later for s in a["seconds"].values())
        lines.append(f"Later attempts (at {commits}) found every run finished and ran notebooks again, "
                     f"{seconds:.0f} s in all.")  # fmt: skip
    chosen = []
    for name in ("original_cnn", "edited_cnn", "resnet18", "resnet18-classification"):
        runs = result(f"{name}.json")["runs"].values()
        epochs = ", ".join(str(min(r["checkpoints"], key=lambda c: c["val_loss"])["epoch"]) for r in runs)
        chosen.append(f"{name} {epochs}")
    lines.append(f"The dev part chose these epochs of 30 for seeds 0, 1 and 2: {'; '.join(chosen)}.")
    return " ".join(lines)


def test_the_study_runs_record_is_its_files():
    assert study_run_text() in " ".join(RESULTS_PAGE.read_text().split())


@pytest.mark.slow
def test_the_fast_tier_tests_every_lib_module():
    """make test-fast (the tests not marked slow) imports every module of lib somewhere: a
    contributor's quick check leaves no module untested."""
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "not slow", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    files = {line.split("::")[0] for line in collected.splitlines() if "::" in line}
    imported = set()
    for f in files:
        text = (ROOT / f).read_text()
        for names in re.findall(r"from lib import \(?([\w, \n]+)\)?", text):
            imported |= {n.strip() for n in names.replace("\n", " ").split(",") if n.strip()}
        imported |= set(re.findall(r"\blib\.(\w+)", text))
    modules = {p.stem for p in (ROOT / "lib").glob("*.py")} - {"__init__"}
    assert modules - imported == set()


MAX_FUNCTION_LINES = 60  # from the first decorator to the last line, docstring included
MAX_MODULE_LINES = 500


def oversized(path: Path, root: Path = ROOT) -> list[str]:
    """The functions of one source file over MAX_FUNCTION_LINES, and the file itself if it is over
    MAX_MODULE_LINES, named relative to `root`: 'lib/x.py:12 name (61 lines)', 'lib/x.py (501 lines)'."""
    source = path.read_text()
    where = path.relative_to(root).as_posix()
    found = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            lines = node.end_lineno - first + 1
            if lines > MAX_FUNCTION_LINES:
                found.append(f"{where}:{first} {node.name} ({lines} lines)")
    if len(source.splitlines()) > MAX_MODULE_LINES:
        found.append(f"{where} ({len(source.splitlines())} lines)")
    return found


def test_oversized_finds_long_functions_and_modules(tmp_path):
    """The size check itself, on a file written for it: a decorated function of 61 lines is
    found (its decorator counted), one of 60 is not, nor a short module."""
    body = "    x = 0\n" * 57
    short = "def fits():\n" + '    """60 lines."""\n' + body + "    return x\n"
    long = "@staticmethod\ndef too_long():\n" + '    """61 lines."""\n' + body + "    return x\n"
    path = tmp_path / "probe.py"
    path.write_text(short + "\n\n" + long)
    assert oversized(path, tmp_path) == ["probe.py:63 too_long (61 lines)"]
    path.write_text(short * 8)  # 480 lines
    assert oversized(path, tmp_path) == []
    path.write_text(short * 9)
    assert oversized(path, tmp_path) == ["probe.py (540 lines)"]


def test_no_function_over_60_lines_and_no_module_over_500():
    """Every function of lib (decorators and docstring counted) fits on one screen, and every
    module stays a file one can read through."""
    offenders = [o for path in sorted((ROOT / "lib").glob("*.py")) for o in oversized(path)]
    assert not offenders, "over the size limits:\n" + "\n".join(offenders)


SCALES = {"L_SCALE", "AB_SCALE"}  # lib.lab's normalization constants


def scales_by_hand(path: Path, root: Path = ROOT) -> list[str]:
    """Where a source file reads lib.lab's normalization constants itself, 'lib/x.py:12 AB_SCALE':
    scaling between Lab units and the model's scale that lib.lab's functions should do."""
    where = path.relative_to(root).as_posix()
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names]
        else:
            names = [getattr(node, "attr", None) or getattr(node, "id", None)]
        found += [f"{where}:{node.lineno} {n}" for n in names if n in SCALES]
    return found


def test_scales_by_hand_finds_every_use_of_the_constants(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text(
        "from lib import lab\nfrom lib.lab import AB_SCALE\n\n\ndef f(x):\n"
        "    return x * lab.AB_SCALE / 100, lab.L_SCALE_NOTE, lab.normalize_l(x)\n"
    )
    assert sorted(scales_by_hand(path, tmp_path)) == ["probe.py:2 AB_SCALE", "probe.py:6 AB_SCALE"]


def test_only_lib_lab_converts_between_lab_units_and_the_models_scale():
    """One conversion path between images and model tensors: no module but lib.lab scales by its
    L_SCALE or AB_SCALE (they use lab.normalize_l, lab.denormalize_ab, lab.rgb_to_model, ...)."""
    offenders = [
        o
        for path in sorted((ROOT / "lib").glob("*.py"))
        if path.name != "lab.py"
        for o in scales_by_hand(path)
    ]
    assert not offenders, "scaled by hand, not through lib.lab:\n" + "\n".join(offenders)


def reads_or_sets_on_a_model(path: Path, root: Path = ROOT) -> list[str]:
    """Where a source file sets an attribute on a model (`model.x = ...`, `model.head.x = ...`,
    setattr) or reads one with getattr: settings stuck onto a model rather than held by an object
    that says what it holds (checkpoints.Inference, train.Parts)."""
    where, found = path.relative_to(root).as_posix(), []

    def on_model(node) -> bool:  # model, net, model.head, self.model, ...
        while isinstance(node, ast.Attribute):
            if node.attr in ("model", "net"):
                return True
            node = node.value
        return isinstance(node, ast.Name) and node.id in ("model", "net", "m")

    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets = list(node.targets) if isinstance(node, ast.Assign) else []
        targets += [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else []
        if any(isinstance(t, ast.Attribute) and on_model(t.value) for t in targets):
            found.append(f"{where}:{node.lineno} sets an attribute")
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "setattr"):
            if node.args and on_model(node.args[0]):
                found.append(f"{where}:{node.lineno} {node.func.id}")
    return found


def test_reads_or_sets_on_a_model_finds_them(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text(
        "def f(model, x):\n    model.size = 1\n    x.model.head.prior = 2\n"
        "    getattr(model, 'size', None)\n    setattr(net, 'a', 1)\n    x.size = model.size\n"
    )
    assert reads_or_sets_on_a_model(path, tmp_path) == [
        "probe.py:2 sets an attribute", "probe.py:3 sets an attribute", "probe.py:4 getattr",
        "probe.py:5 setattr",
    ]  # fmt: skip


def test_nothing_outside_lib_models_sets_or_reads_attributes_on_a_model():
    """What inference needs is held by checkpoints.Inference and what training needs by
    train.Parts: no module but models.py sets an attribute on a model or reads one by getattr."""
    paths = [p for p in sorted((ROOT / "lib").glob("*.py")) if p.name != "models.py"]
    offenders = [o for path in paths for o in reads_or_sets_on_a_model(path)]
    assert not offenders, "\n".join(offenders)


def test_fit_takes_its_settings_as_one_object():
    """fit(settings, loaders, out_dir, resume): at most six parameters, the settings one object."""
    params = inspect.signature(train.fit).parameters
    assert len(params) <= 6 and params["settings"].annotation is Settings


def test_no_module_but_lib_models_branches_on_a_heads_name():
    """Heads register themselves (models.HEADS) and callers ask a head's capabilities
    (takes_vividness, uses_prior), so no comparison anywhere else names a head."""
    from lib import models

    offenders = []
    for path in sorted((ROOT / "lib").glob("*.py")):
        if path.name == "models.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                named = [n.value for n in [node.left, *node.comparators] if isinstance(n, ast.Constant)]
                offenders += [f"{path.name}:{node.lineno} {v!r}" for v in named if v in models.HEADS]
    assert not offenders, "\n".join(offenders)
