"""Runnable examples; see the header of each for the command that runs it."""
