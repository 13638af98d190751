"""The library under the root scripts: image I/O, architectures, losses, degradations, inference,
metrics, and (in training/) the training loop, run folders and settings."""
import os

# The repository root: weights/, configs/ and exports/ live there.
REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
