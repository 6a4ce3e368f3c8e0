"""visionpipe trainer_module package: the Transform's preprocessing_fn, the Trainer's run_fn, the models."""
