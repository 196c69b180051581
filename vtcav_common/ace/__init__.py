"""3D-ACE: automatic concept discovery from supervoxels (Ji et al. 2022), with a faithfulness check.

- :mod:`.supervoxels`: SLIC over the ``T x H x W`` volume at several resolutions,
  duplicates and tiny segments dropped, each supervoxel cut out on grey as a clip;
- :mod:`.candidates`: a class's videos -> one clip-set file of candidates (``vt-ace supervoxels``);
- :mod:`.store`: the extra per-clip datasets of supervoxel sets (masks, segment info, centres);
- :mod:`.features`: the layer activations, pooled per channel, that clustering uses;
- :mod:`.discover`: k-means into concepts, the concept clip-set file, TCAV ranking (``vt-ace discover``);
- :mod:`.faithfulness`: add / remove the top, random and least concepts, classify (``vt-ace faithfulness``);
- :mod:`.sheets`: a contact-sheet PNG per concept (``vt-ace sheet``);
- :mod:`.steps`: vt-ace's subcommands as library calls, one function each (the front end only parses).

See docs/ace.md.
"""
