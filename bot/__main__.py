"""`python -m bot` runs the hubbot command line."""

from bot.cli import main

raise SystemExit(main())
