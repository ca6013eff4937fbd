"""The `restorevar` command: `main` registers the subcommands; one module per command group."""
