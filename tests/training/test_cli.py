"""`python -m training`: one dispatch style (every subcommand names its function), the recipe
built from the parsed arguments, the card's architecture read from the built model."""

import argparse
import dataclasses
from types import SimpleNamespace

import pytest

from training.__main__ import build_parser, main
from training.train import TrainConfig, architecture_of

# The smallest valid command line of every subcommand (and every `ood` verb).
COMMANDS = {
    "split": ["split"],
    "pack": ["pack", "--out", "x"],
    "train": ["train"],
    "head-refit": ["head-refit", "--model", "m", "--out", "o"],
    "top-finetune": ["top-finetune", "--model", "m", "--out", "o"],
    "calibrate": ["calibrate", "--model", "m"],
    "evaluate": ["evaluate", "--data", "d", "--out", "o"],
    "robustness": ["robustness", "--out", "o"],
    "explain-eval": ["explain-eval", "--out", "o"],
    "promote": ["promote", "--candidate", "c"],
    "ood fit": ["ood", "fit"],
    "ood evaluate": ["ood", "evaluate"],
    "ood upload-check": ["ood", "upload-check"],
    "ood colour-evidence": ["ood", "colour-evidence"],
    "sequence-probe": ["sequence-probe", "--out", "o"],
}


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    names = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _subcommands(sub, f"{prefix}{name} ")
                names += nested or [f"{prefix}{name}"]
    return names


def test_every_subcommand_is_covered_here():
    assert sorted(_subcommands(build_parser())) == sorted(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_parses_and_resolves_to_a_function(name):
    args = build_parser().parse_args(COMMANDS[name])
    assert callable(args.func), name
    assert args.func.__module__.startswith("training."), name


def test_main_calls_the_subcommands_function(monkeypatch):
    from training import commands

    called = []
    monkeypatch.setattr(commands, "run_split", lambda args: called.append(args.val_fraction) or 7)
    # The parser binds the function when it is built: build it after patching.
    assert main(["split", "--val-fraction", "0.3"]) == 7
    assert called == [0.3]


def test_train_config_is_built_from_the_parsed_arguments():
    args = build_parser().parse_args(["train", "--dropout", "0.5", "--batch-size", "8", "--init-model", "models/x"])
    config = TrainConfig.from_args(args)
    assert (config.dropout, config.batch_size, config.init_model) == (0.5, 8, "models/x")
    assert TrainConfig.from_args(build_parser().parse_args(["train"])) == TrainConfig()
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= set(vars(args))


class _Layer(SimpleNamespace):
    pass


def _fake_model(dropout: float, units: int = 256):
    """The head of mri.model.definition.build_classifier, as layer-like objects (no TensorFlow)."""
    GlobalAveragePooling2D = type("GlobalAveragePooling2D", (_Layer,), {})
    Dense = type("Dense", (_Layer,), {})
    Dropout = type("Dropout", (_Layer,), {})

    def relu(x):
        return x

    def linear(x):
        return x

    layers = {
        "head_pool": GlobalAveragePooling2D(name="head_pool"),
        "head_dense": Dense(name="head_dense", units=units, activation=relu),
        "head_dropout": Dropout(name="head_dropout", rate=dropout),
        "logits": Dense(name="logits", units=4, activation=linear),
    }
    return SimpleNamespace(get_layer=layers.__getitem__)


def test_the_architecture_string_follows_the_models_head():
    assert architecture_of(_fake_model(0.3)) == "Xception (ImageNet) → GAP → Dense(256, ReLU) → Dropout(0.3) → 4 logits"
    assert "Dropout(0.5)" in architecture_of(_fake_model(0.5))


@pytest.mark.model
def test_the_architecture_string_follows_dropout_on_the_real_model():
    from mri.model.definition import build_classifier

    args = build_parser().parse_args(["train", "--dropout", "0.5"])
    config = TrainConfig.from_args(args)
    model = build_classifier(71, None, config.dropout)
    assert architecture_of(model) == "Xception (ImageNet) → GAP → Dense(256, ReLU) → Dropout(0.5) → 4 logits"
