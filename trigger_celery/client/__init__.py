"""The APIs users call from web code and from runs: trigger, batch, runs."""
