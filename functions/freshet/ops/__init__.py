"""Operating Freshet: the pipeline config, apply, the API, the CLI, the HTTP layer."""
