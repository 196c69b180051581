"""The command frame and the option vocabulary of the ``vt-*`` front ends (tools/).

- :mod:`.frame`    the typer app every tool shares: errors to one line and an exit status,
                   signals, ``--version``, the warnings summary;
- :mod:`.options`  the options every command shares, declared once (one name, one meaning);
- :mod:`.bundles`  options that commands take together (the model bundle, vt-concepts' and
                   vt-ace's groups), declared once as a dataclass a command receives whole.

Only the front ends import this package (tests/test_layout.py checks it); library code
raises :mod:`vtcav_common.core.errors` and reports through :mod:`vtcav_common.core.messages`.
"""
