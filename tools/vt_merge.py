"""vt-merge: join the shards of one sharded run (--shard K/N) into the file the unsharded run writes."""

from __future__ import annotations

import os
from typing import List, Optional

import typer

from vtcav_common.cli import frame, options
from vtcav_common.core import messages

app = frame.make_app(
    "vt-merge",
    help="Join the shard files of one run (`vt-detect`, `vt-embed`, `vt-explain`, `vt-ace supervoxels`, "
         "`vt-concepts` run with `--shard K/N`) into the one file the unsharded run writes: the same "
         "records in the same order, the same arrays. The kind is read from the shards (an HDF5 file's "
         "`vtcav_kind`; a detections JSONL's sidecar `FILE.shard.json`).\n\n"
         "Refuses, with one line and nothing written, shards that are missing, given twice, or not of "
         "the same run (provenance, inputs or layout differ).\n\n"
         "HDF5 arrays are joined as **virtual datasets** that read the shards in place (no copy; keep "
         "the shard files where they are relative to OUT); `--copy` writes a self-contained file. "
         "See docs/scale.md.",
    epilog="Examples:\n\n"
           "    vt-merge -o detections.jsonl detections.jsonl.0 detections.jsonl.1\n\n"
           "    vt-merge -o acts.h5 shards/acts.*.h5\n\n"
           "    vt-merge --copy -o maps.h5 maps.0.h5 maps.1.h5 maps.2.h5\n\n"
           "Without -o the first file is the output (the earlier form: vt-merge acts.h5 shards/acts.*.h5).",
)


@app.command()
def merge(
    shards: List[str] = typer.Argument(..., help="The shard files, in any order (without -o: the merged file "
                                                 "first, then the shards).", show_default=False),
    output: Optional[str] = options.output(None, help="The merged file to write (atomically)."),
    copy: bool = typer.Option(False, "--copy", help="HDF5: copy the arrays into OUT (self-contained) instead "
                                                    "of virtual datasets that read the shards."),
    quiet: bool = options.quiet(help="No summary on stderr."),
    version: bool = frame.version_option(),
) -> None:
    from vtcav_common.scale.merge import merge_files

    messages.set_quiet(quiet)
    if output is None:                     # the earlier form: OUT SHARD...
        output, shards = shards[0], shards[1:]
        from vtcav_common.core.files import refuse_overwriting_inputs

        refuse_overwriting_inputs([p for p in shards if os.path.isfile(p)], [output])
    if not shards:
        raise frame.UsageError("give the shard files to merge (vt-merge -o OUT SHARD...)")
    summary = merge_files(shards, output, copy=copy)
    how = " (virtual datasets over the shards)" if summary["virtual"] else ""
    messages.info(f"vt-merge: {summary['shards']} {summary['kind']} shards, {summary['rows']} "
                  f"{'records' if summary['kind'] == 'detections' else 'rows'} -> {output}{how}")


main = frame.entry(app, "vt-merge")
