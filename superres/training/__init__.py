"""Training: the loop and its strategies, run folders (resume, kill safety), settings."""
