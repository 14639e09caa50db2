"""Command implementations behind `hubbot <command>`; imported lazily by `bot.cli`."""
