"""File formats, one module a file kind, each both writing and reading its kind."""
