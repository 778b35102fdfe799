"""Pipeline stages: one module per stage, each with a typed config and a `run(config)` entry."""
