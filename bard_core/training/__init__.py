"""Training recipes. Each has the same small interface, called in this order by `run_recipe`:

    recipe = Recipe(config, data_files, out_dir)
    recipe.setup()     # model, tokenizer, data, trainer
    recipe.train()     # resumes from the last checkpoint under out_dir, if any
    recipe.save()      # the model directory, tokenizer and metrics.json
    recipe.cleanup()

Backends are imported only inside their recipe module (TRL here); the `openrlhf` backend is not a recipe
but a command line (`openrlhf.py`) run as a Ray job. `python -m bard_core.training` runs a TRL recipe as a
plain process, e.g. as a Ray job on any GPU node.
"""


def run_recipe(recipe) -> dict:
    """setup, train, save, cleanup; return what `save` returns (the metrics)."""
    recipe.setup()
    recipe.train()
    metrics = recipe.save()
    recipe.cleanup()
    return metrics
