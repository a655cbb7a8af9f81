"""The `ktune` command: one thin subcommand module per stage; heavy imports happen inside `run`."""
