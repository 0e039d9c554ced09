"""Run the notebooks headlessly, in order, with one parameter profile; export HTML and PDF.

    python -m lib.pipeline                         # the quick profile (what `make run` does)
    python -m lib.pipeline --profile full --data /path/to/photos
    python -m lib.pipeline --set epochs=2 --set image_size=32

A profile (notebooks/profiles/<name>.yaml) holds parameters for every notebook at its top level and
per-notebook ones under the notebook's name; each notebook receives the ones its `parameters` cell
declares. Everything goes into one new folder, runs/<profile>-<time>/: the executed notebooks, html/
(each file stands alone: images embedded, equations as MathML, no script), pdf/ (A4, printed from
the HTML by a headless Chromium, when there is one: lib.exports), results/, figures/ and
checkpoints/. A failing notebook stops the run with exit code 1 and a line naming the notebook and
the cell; the partly executed notebook stays for inspection. `--out` naming the folder of an earlier
run of the same profile continues it (start_or_continue): how a long study run that a session's end
cut short goes on. pipeline.json records the profile (its name and values), the overrides and each
attempt's commit and seconds per notebook, written after every notebook.
"""

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import yaml

from lib import exports, options, results

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
# In the order they run: chapter 4 compares every model, so it runs after chapter 5, which trains
# the last one (the classification head); readers read them in their numbered order.
NOTEBOOKS = ["01_OriginalCNN", "02_EditedCNN", "03_ResNet18", "05_Classification", "04_Comparison"]


def load_profile(name: str) -> dict:
    """A profile by name (notebooks/profiles/<name>.yaml) or path: a mapping of parameters (to
    every notebook that declares them) and of notebook names to mappings of their own. Its
    names are checked here (lib.options.PARAMETERS); its values, once merged, by parameters_for."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else NOTEBOOK_DIR / "profiles" / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such profile")
    try:
        profile = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a YAML profile ({type(e).__name__})") from None
    return options.check_profile(profile, NOTEBOOKS, str(path))


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
    """The profile's common values, then the notebook's own, then overrides, each checked against
    its declared type and range (lib.options); only the names the notebook declares."""
    import papermill

    declared = papermill.inspect_notebook(NOTEBOOK_DIR / f"{notebook}.ipynb")
    merged = {k: v for k, v in profile.items() if k not in NOTEBOOKS}
    merged |= profile.get(notebook, {}) | overrides
    checked = options.check_parameters(merged, f"{notebook}'s parameters")
    return {k: v for k, v in checked.items() if k in declared}


def execute(notebook: str | Path, out_dir: Path, parameters: dict) -> Path:
    """Run a notebook (its name in notebooks/, or the path of a .ipynb file) with papermill, in
    notebooks/, into out_dir/<its name>.ipynb; returns that path. The kernel talks to papermill over
    IPC, Unix sockets in a temporary folder of their own (removed afterwards), not over TCP on
    localhost, which ipykernel warns is unencrypted, once per notebook.

    The kernel is this function's own, and papermill drives it from a second thread, so that
    whatever stops the pipeline (Ctrl-C, SIGTERM: a KeyboardInterrupt here) stops the kernel at
    once, a training cell included, instead of a shutdown request that a busy kernel answers only
    when its cell ends."""
    import papermill
    from jupyter_client.manager import KernelManager
    from traitlets.config import Config

    src = Path(notebook) if str(notebook).endswith(".ipynb") else NOTEBOOK_DIR / f"{notebook}.ipynb"
    dst = out_dir / src.name
    with tempfile.TemporaryDirectory(prefix="kernel-") as sockets:
        # For IPC the connection's `ip` is the sockets' path prefix; left to its default it is a
        # relative "kernel-ipc", files in whatever folder each side runs in.
        ipc = Config(KernelManager={"transport": "ipc", "ip": str(Path(sockets) / "ipc")})
        if os.name != "posix":  # no Unix sockets (Windows): TCP on localhost, and its warning
            ipc = Config()
        km = KernelManager(kernel_name="python3", config=ipc)
        failed = []

        def drive():
            try:
                papermill.execute_notebook(
                    src, dst, parameters=parameters, kernel_name="python3", cwd=NOTEBOOK_DIR,
                    progress_bar=False, request_save_on_cell_execute=True,  # keep what ran if a cell fails
                    km=km,
                )  # fmt: skip
            except BaseException as e:  # handed to the main thread, which raises it
                failed.append(e)

        driver = threading.Thread(target=drive, name=f"papermill {src.stem}", daemon=True)
        driver.start()
        try:
            while driver.is_alive():
                driver.join(0.2)  # short waits: the main thread stays free to take a signal
        finally:
            if km.has_kernel:
                km.shutdown_kernel(now=True)  # at once: a stopped run leaves no kernel training
            driver.join(timeout=10)
    if failed:
        raise failed[0]
    return dst


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
    every = {nb: parameters_for(nb, profile, overrides) for nb in notebooks}  # all checked first
    record = start_or_continue(out, profile_name, profile, overrides)
    (out / "html").mkdir(parents=True, exist_ok=True)
    chromium = exports.find_chromium() if pdf else None
    if pdf and chromium is None:
        print("PDF export skipped: no Chromium found (Debian/Ubuntu: apt-get install chromium)")
    timings = {}
    record["attempts"].append({"started": results.now(), "code": results.CODE_COMMIT, "seconds": timings})
    results.save(out / "pipeline.json", **record)  # first: a run cut short in notebook 1 continues too
    for nb in notebooks:
        t0 = time.perf_counter()
        print(f"{nb}: running ...", flush=True)
        try:
            executed = execute(nb, out, every[nb])
        except papermill.PapermillExecutionError as e:
            raise RuntimeError(
                f"{nb} failed in cell {e.exec_count} ({e.ename}: {e.evalue}); "
                f"the partly executed notebook is {out / (nb + '.ipynb')}"
            ) from None
        html = exports.export_html(executed, out / "html")
        if chromium:
            exports.export_pdf(html, out / "pdf", chromium)
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


@options.command
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
    try:
        overrides = options.parse_set(a.set) | ({"dataset": a.data} if a.data else {})
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
