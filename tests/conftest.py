"""Shared test set-up: quiet TensorFlow and keep runs on one thread per process."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
