"""vtcav: Video-TCAV and its neighbours as composable command-line tools.

The library behind the ``vt-*`` commands (``tools/``), one folder a pipeline stage, in order:

- ``core/``      errors, messages, files (atomic output, hashing), HDF5 with provenance, video, registries
- ``formats/``   one module a file kind, writing and reading it: clips, embeddings, cavs, relevance, ...
- ``models/``    model sources behind ``load_model`` (torchvision, factories, TorchScript, mmaction2), layers
- ``synth/``     the synthetic motion world with a known answer (vt-synth)
- ``detect/``    objects and their tracks in videos; importers of other tools' tracks (vt-detect)
- ``concepts/``  concept clips mined from tracks, random clips, imports, review sheets (vt-concepts)
- ``embed/``     the model pass: activations and gradients of many layers, pooled (vt-embed)
- ``tcav/``      classifiers, CAVs, directional derivatives, TCAV scores (vt-cav, vt-score)
- ``stats/``     significance tests, corrections, families, the figure (vt-stats)
- ``explain/``   relevance maps, selective relevance, overlays (vt-explain)
- ``ace/``       3D-ACE concept discovery, built from the stages above (vt-ace)
- ``scale/``     ``--shard K/N`` and joining the shards (vt-merge)
- ``report/``    the HTML/Markdown report, built from the stages above (vt-report)
- ``cli/``       the command frame and the shared options, for the front ends only

A stage imports only ``core``, ``formats`` and ``models`` (``ace`` and ``report`` may import
the stages they are built from); tests/test_layout.py enforces it.
"""

__version__ = "0.1.0"
