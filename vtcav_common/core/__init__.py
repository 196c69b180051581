"""The shared layer under every stage: errors, messages, files, HDF5, video, parsing, selection."""
