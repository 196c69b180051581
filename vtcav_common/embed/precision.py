"""The precisions the model pass runs in (``vt-embed --precision``), torch-free so that the
front end's ``--help`` lists them at once; :func:`~vtcav_common.embed.layer_pass.resolve_precision`
turns one into a dtype on a device."""

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
