"""Federation: model building (TensorFlow), Flower strategies, the ServerApp and the CLI."""
