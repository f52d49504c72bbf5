"""Running an evaluation: episodes, the resumable and sharded runner, run files, folds, protocols, threads."""
