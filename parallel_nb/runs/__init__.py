"""A run's life in the notebook: the state that views fold events into, and the runner."""
