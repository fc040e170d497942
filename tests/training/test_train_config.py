"""The training CLI's defaults come from TrainConfig, the one home of the recipe."""

import dataclasses

from training.__main__ import build_parser
from training.train import TrainConfig


def test_train_cli_defaults_are_the_train_config():
    args = build_parser().parse_args(["train"])
    recipe = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        assert getattr(args, field.name) == getattr(recipe, field.name), field.name


def test_the_shipped_models_recipe_is_the_default_one():
    """The default recipe is the stage that starts from ImageNet; a model fine-tuned from an
    earlier one (`--init-model`) keeps that stage in its card's history."""
    import json

    from mri.card import read_card

    card = read_card()
    lineage = [card, *reversed(card.get("history", []))]
    from_imagenet = [stage["recipe"] for stage in lineage if stage["recipe"].get("backbone_weights") == "imagenet"]
    assert from_imagenet, "no stage of the shipped model's lineage starts from ImageNet"
    shipped = from_imagenet[0]
    recipe = dataclasses.asdict(TrainConfig())
    differing = {
        k
        for k in ("input_size", "batch_size", "head_epochs", "finetune_epochs", "finetune_lr", "first_block")
        if shipped.get(k) != recipe[k]
    }
    assert differing == set(), json.dumps({k: (shipped.get(k), recipe[k]) for k in differing})
