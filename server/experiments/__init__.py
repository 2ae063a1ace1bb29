"""The experiments: the demo and the task benchmark, their reports and plots."""
