"""The command line: one module per command (its options, its request, its rendering), the options
they share (options.py), the one error wrapper (guard.py), and the app that reads the command table
(app.py). A command module imports its use case, never another command module."""
