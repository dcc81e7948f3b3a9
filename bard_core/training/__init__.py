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
    quiet_progress_bars()
    recipe.setup()
    trainer = getattr(recipe, "trainer", None)
    if trainer is not None:
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        # the per-step bar becomes one line of metrics per `logging_steps` in the log (bard shows the steps itself)
        if trainer.pop_callback(ProgressCallback) is not None:
            trainer.add_callback(PrinterCallback)
    recipe.train()
    metrics = recipe.save()
    recipe.cleanup()
    return metrics


def quiet_progress_bars() -> None:
    """No progress bars from datasets (loading, filtering, tokenizing) nor transformers (loading and writing weights) in
    this training process: in a log file they are hundreds of carriage-return lines. Their warnings still show."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
