"""The project's own promises: one dependency list, the two README commands, CI calls the tests."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from lib import checkpoints, metrics

ROOT = Path(__file__).resolve().parents[1]


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


def test_readme_results_table_is_the_reference_runs():
    """Every number of README's results table comes from figures/results/comparison.json."""
    path = ROOT / "figures" / "results" / "comparison.json"
    scores = json.loads(path.read_text())["metrics"]
    assert metrics.format_table(scores, markdown=True) in (ROOT / "README.md").read_text()


def test_readme_heads_table_is_the_evaluation_on_real_photos():
    """The two heads' scores on real photos come from what `python -m lib.evaluate` wrote."""
    record = result("heads_photos.json")
    readme = (ROOT / "README.md").read_text()
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


def test_readme_speed_figures_are_the_benchmarks():
    bench = result("bench_colorize.json")
    readme = (ROOT / "README.md").read_text()
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
    part of the split only; its settings were chosen on the dev part; it trained >= 90 minutes."""
    from lib import data, datasets

    readme = (ROOT / "README.md").read_text()
    split = ROOT / "data" / "splits" / "photos.tsv"
    _, rows = data.read_split(split)
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
    for name in ("reference_dev_vividness.json", "reference_candidates_dev.json"):
        dev = result(name)
        assert dev["split"]["part"] == "dev" and metrics.format_table(dev["metrics"], markdown=True) in readme
    run = result("reference_train.json")
    assert run["data"]["n_train"] == 6015 and run["data"]["split"]["sha256"] == datasets.sha256(split)
    assert sum(h["seconds"] for h in run["history"]) >= 90 * 60
    assert f"{sum(h['seconds'] for h in run['history']) / 60:.0f} minutes" in readme


def test_inference_imports_no_training_code():
    """colorize, evaluate and the notebooks' set-up load and use models without lib.train (and
    so without the training loop, DDP and its progress bars)."""
    code = "import sys, lib.colorize, lib.evaluate, lib.notebook; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    loaded = done.stdout.split()
    assert "lib.checkpoints" in loaded and "lib.train" not in loaded


def test_readme_training_curve_of_the_reference_model_is_its_results_file():
    record = json.loads((ROOT / "figures" / "results" / "reference_dev_epochs.json").read_text())
    rows, gray = record["metrics"], record["metrics"]["gray baseline"]["auc"]
    readme = (ROOT / "README.md").read_text()
    faithful_rows = [k for k in record["checkpoints"] if k.endswith("(vividness 0)")]
    assert len(faithful_rows) == 6
    for name in faithful_rows:
        epoch, val = re.search(r"epoch-(\d+)-val-([\d.]+)\.pt", record["checkpoints"][name]["path"]).groups()
        faithful, default = rows[name], rows[name.replace("(vividness 0)", "(vividness 0.1)")]
        cf = default["colourfulness"]
        row = f"| {int(epoch)} | {float(val):.4f} | {faithful['auc']:.4f} (+{faithful['auc'] - gray:.4f}) | "
        row += f"{cf:.1f} ({cf / default['colourfulness_true']:.2f}×) |"
        assert row in readme
