"""vtcav: Video-TCAV and its neighbours as composable command-line tools.

The library behind the ``vt-*`` commands.  Each module has one job:

- ``frame``      the command frame every tool shares (errors, exit codes, warnings summary)
- ``options``    the options every command shares, declared once (one vocabulary)
- ``files``      stdin/stdout as ``-``, atomic outputs; ``messages`` info, warnings, progress
- ``records``    JSONL records (detections, labels) and their validation
- ``h5io``       HDF5 files with provenance, schema checks and atomic writes
- ``video``      reading and writing video files
- ``synth``      the synthetic world with a known answer
"""

__version__ = "0.1.0"
