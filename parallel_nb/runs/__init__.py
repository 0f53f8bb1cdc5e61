"""A run's life in the notebook: the state every view folds events into, and the runner that feeds it."""
