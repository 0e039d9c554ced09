"""Every value a user gives is checked where it enters (lib.options): each command's options and
each notebook's parameters, as a command line, a profile, --set or papermill gives them. A bad
value is one line naming the option, before any work; a good one arrives in its declared type."""

import pytest

from lib import colorize, evaluate, notebook, options, pipeline, train


def test_checks_convert_text_and_refuse_what_is_out_of_type_or_range():
    assert options.count(1)("3") == 3 and options.count(0)(0) == 0
    assert options.number(0, low_open=True)("1e-4") == 1e-4  # YAML reads 1e-4 as a string
    assert options.optional(options.count(1))("null") is None
    assert options.flag("false") is False and options.seeds("0,1,2") == [0, 1, 2] == options.seeds([0, 1, 2])
    refused = [
        (options.count(1), 0), (options.count(1), True), (options.count(1), 2.5), (options.count(1), "x"),
        (options.number(0, low_open=True), 0), (options.number(0, 1), float("nan")),
        (options.number(0, 1), "1.5"),
        (options.SIZE, 4), (options.SIZE, 4096), (options.one_of("crop", "none"), "affine"),
        (options.flag, "maybe"), (options.seeds, []), (options.seeds, "a,b"), (options.text, ""),
    ]  # fmt: skip
    for check, value in refused:
        with pytest.raises(options.BadValue) as refusal:
            check(value)
        assert str(refusal.value).startswith("must be ") and str(refusal.value).endswith(f"got {value!r}")


EVAL = ["--checkpoint", "reference", "--data", "d"]
BAD_OPTIONS = [
    (train.main, ["--epochs", "0"], "--epochs: must be an int from 1 up, got '0'"),
    (train.main, ["--epochs", "-3"], "--epochs: must be an int from 1 up"),
    (train.main, ["--size", "0"], "--size: must be an int from 8 to 2048"),
    (train.main, ["--lr", "0"], "--lr: must be a number above 0"),
    (train.main, ["--batch-size", "-1"], "--batch-size: must be an int from 1 up"),
    (train.main, ["--warmup", "1.5"], "--warmup: must be a number in (0, 1)"),
    (train.main, ["--crop-scale", "0"], "--crop-scale: must be a number in (0, 1]"),
    (train.main, ["--max-images", "0"], "--max-images: must be an int from 1 up"),
    (train.main, ["--workers", "-2"], "--workers: must be an int from 0 up"),
    (train.main, ["--seed", "-1"], "--seed: must be an int from 0 up"),
    (train.main, ["--head", "classification", "--rebalance", "0"], "--rebalance: must be a number in (0, 1]"),
    (train.main, ["--head", "classification", "--neighbours", "99"], "--neighbours: must be an int from 1"),
    (colorize.main, ["x.png", "--size", "4"], "--size: must be an int from 8 to 2048"),
    (colorize.main, ["x.png", "--batch-size", "0"], "--batch-size: must be an int from 1 up"),
    (colorize.main, ["x.png", "--vividness", "1.5"], "--vividness: must be a number in [0, 1]"),
    (evaluate.main, [*EVAL, "--size", "0"], "--size: must be an int from 8"),
    (evaluate.main, [*EVAL, "--working-size", "-64"], "--working-size: must"),
    (evaluate.main, [*EVAL, "--vividness", "0", "2"], "--vividness: must"),
    (evaluate.main, [*EVAL, "--batch-size", "0"], "--batch-size: must"),
    (train.main, ["--device", "gpu"], "--device: must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
    (colorize.main, ["x.png", "--device", "cuda:99"], "--device: must be a "),  # no machine has 100 GPUs
    (evaluate.main, [*EVAL, "--device", "cuda:99"], "--device: must be a "),
]  # fmt: skip


@pytest.mark.parametrize("main, argv, message", BAD_OPTIONS)
def test_a_bad_option_of_any_command_is_one_line_naming_it_before_any_work(
    main, argv, message, capsys, tmp_path
):
    with pytest.raises(SystemExit) as stopped:
        main([*argv, *(["--out", str(tmp_path / "out")] if main is not colorize.main else [])])
    err = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and message in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "epochs"], "--set epochs: give NAME=VALUE"),
        (["--set", "epoch=3"], "--set: no parameter epoch; the parameters are dataset, image_size"),
        (["--set", "bf16=true"], "--set: no parameter bf16"),  # renamed precision (issue 20)
        (["--set", "lr=fast"], "--set: parameter lr must be a number above 0, got 'fast'"),
        (["--set", "seeds=a,b"], "--set: parameter seeds must be a list of seeds"),
        (["--set", "precision=fp8"], "--set: parameter precision must be one of auto, fp32, bf16, fp16"),
        (["--set", "device=cuda:99"], "--set: parameter device must be a "),
    ],
)
def test_the_pipeline_refuses_a_bad_set_by_name_before_any_notebook_runs(argv, message, capsys, tmp_path):
    assert pipeline.main([*argv, "--out", str(tmp_path / "run"), "--no-pdf"]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_set_values_arrive_in_their_declared_type():
    assert options.parse_set(["lr=1e-4", "max_images=null", "seeds=[0, 1]", "epochs=2"]) == {
        "lr": 1e-4, "max_images": None, "seeds": [0, 1], "epochs": 2,
    }  # fmt: skip
    assert isinstance(options.parse_set(["lr=1e-4"])["lr"], float)


@pytest.mark.parametrize(
    "text, message",
    [
        ("- 1\n- 2\n", "must map parameters to values (name: value), found list"),
        ("epochs: 3\nepoks: 2\n", "no parameter epoks"),
        ("01_OriginalCNN: 3\n", "must map parameters to values (name: value), found int"),
        (
            "dataset: photos\n01_OriginalCNN:\n  epochs: 0\n",
            "parameter epochs must be an int from 1 up, got 0",
        ),
        ("dataset: photos\nlr: [1]\n", "parameter lr must be a number above 0"),
        ("epochs: [unclosed\n", "not a YAML profile"),
    ],
)
def test_a_bad_profile_is_one_line_before_any_notebook_runs(text, message, capsys, tmp_path):
    profile = tmp_path / "mine.yaml"
    profile.write_text(text)
    assert pipeline.main(["--profile", str(profile), "--out", str(tmp_path / "run"), "--no-pdf"]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_notebook_refuses_a_bad_parameter_before_reading_any_photo():
    namespace = {
        "dataset": "photos",
        "eval_size": 64,
        "epochs": "3",
        "lr": "1e-4",
        "seeds": (0,),
        "device": "cpu",
    }
    namespace |= {"batch_size": 0, "max_images": None, "workers": 0, "n_samples": 2, "out_dir": "x"}
    with pytest.raises(ValueError, match="notebook: parameter batch_size must be an int from 1 up, got 0"):
        notebook.setup(namespace, augment=None)
    good = {k: v for k, v in namespace.items() if k != "batch_size"}
    assert options.check_parameters(good, "notebook") == good | {"epochs": 3, "lr": 1e-4, "seeds": [0]}


def test_every_command_ends_the_same_way_and_an_unforeseen_error_keeps_its_traceback(capsys):
    """options.command wraps every command's main; what it turns into one line, and what not."""
    from lib import datasets

    for command in (colorize, evaluate, train, pipeline, datasets):
        assert command.main.__wrapped__  # the one wrapper (and the console script's entry point)

    def raising(error):
        return options.command(lambda argv=None: (_ for _ in ()).throw(error))

    assert raising(KeyboardInterrupt())() == 130
    assert raising(options.Stopped())() == 143
    assert raising(OSError(28, "No space left on device", "runs/x/last.pt"))() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("interrupted: nothing was left half-written") and len(err) == 3
    assert err[2] == "error: runs/x/last.pt: No space left on device"
    for unforeseen in (RuntimeError("a bug"), OSError("no file named"), KeyError("k")):
        with pytest.raises(type(unforeseen)):  # not a line: a traceback, for someone to fix
            raising(unforeseen)()


def test_evaluate_out_naming_a_folder_is_refused_before_any_work_with_or_without_overwrite(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    (tmp_path / "scores").mkdir()
    argv = [
        "--checkpoint",
        "reference",
        "--data",
        str(tmp_path / "photos"),
        "--out",
        str(tmp_path / "scores"),
    ]
    for extra in ([], ["--overwrite"]):
        assert evaluate.main([*argv, *extra]) == 2
        assert (
            capsys.readouterr().err.strip()
            == f"error: {tmp_path / 'scores'}: is a folder; --out names a file"
        )
    assert (tmp_path / "scores").is_dir() and not list((tmp_path / "scores").iterdir())
