"""Training recipes. Each has the same small interface, called in this order:

    recipe = Recipe(config, data_files, out_dir)
    recipe.setup()     # model, tokenizer, data, trainer
    recipe.train()     # resumes from the last checkpoint under out_dir, if any
    recipe.save()      # the model directory, tokenizer and metrics.json
    recipe.cleanup()

Backends are imported only inside their recipe module (TRL here; OpenRLHF runs as a Ray job).
"""
