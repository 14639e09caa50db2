"""Event handlers, one module per feature, each with its own `router`."""
