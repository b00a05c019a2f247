"""The chaos suite: randomized whole-system runs checked against a model (docs/reliability.md)."""
