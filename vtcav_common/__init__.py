"""vtcav: Video-TCAV and its neighbours as composable command-line tools.

The library behind the ``vt-*`` commands.  Each module has one job:

- ``cli``        the command frame every tool shares (errors, exit codes, stdin/stdout)
- ``records``    JSONL records (detections, labels) and their validation
- ``h5io``       HDF5 files with provenance, schema checks and atomic writes
- ``video``      reading and writing video files
- ``synth``      the synthetic world with a known answer
"""

__version__ = "0.1.0"
