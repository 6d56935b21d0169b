"""Ray/MLflow pipelines built on the genprint core: distributed training, experiment tracking, model registry."""
