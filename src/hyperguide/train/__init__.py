"""The generic training loop (`fit`) and the EMA that every trainer of the project uses."""
