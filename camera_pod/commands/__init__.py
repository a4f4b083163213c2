"""``detector mpta ...`` and ``detector pipeline ...`` subcommands."""
