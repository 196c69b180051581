"""vt-merge: join the shards of one sharded run (--shard K/N) into the file the unsharded run writes."""

from __future__ import annotations

from typing import List

import typer

from vtcav_common import frame, messages

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
           "    vt-merge detections.jsonl detections.jsonl.0 detections.jsonl.1\n\n"
           "    vt-merge acts.h5 shards/acts.*.h5\n\n"
           "    vt-merge --copy maps.h5 maps.0.h5 maps.1.h5 maps.2.h5",
)


@app.command()
def merge(
    output: str = typer.Argument(..., help="The merged file to write (atomically).", show_default=False),
    shards: List[str] = typer.Argument(..., help="The shard files, in any order.", show_default=False),
    copy: bool = typer.Option(False, "--copy", help="HDF5: copy the arrays into OUT (self-contained) instead "
                                                    "of virtual datasets that read the shards."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No summary on stderr."),
    version: bool = frame.version_option(),
) -> None:
    from vtcav_common.merge import merge_files

    messages.set_quiet(quiet)
    summary = merge_files(shards, output, copy=copy)
    how = " (virtual datasets over the shards)" if summary["virtual"] else ""
    messages.info(f"vt-merge: {summary['shards']} {summary['kind']} shards, {summary['rows']} "
                  f"{'records' if summary['kind'] == 'detections' else 'rows'} -> {output}{how}")


main = frame.entry(app, "vt-merge")
