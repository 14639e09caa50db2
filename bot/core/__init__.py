"""The I/O-free core: repository model, validation, planner and rendering.

Nothing in this package imports aiohttp or kubernetes, so the command line starts
fast and every decision can be tested without an event loop.
"""
