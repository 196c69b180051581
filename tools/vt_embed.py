"""vt-embed: activations (and target-logit gradients) of a video model at many layers."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vtcav_common.cli import frame
from vtcav_common.core import errors, files, messages
from vtcav_common.cli import options
from vtcav_common.core import selection
from vtcav_common.scale import shard as sharding
from vtcav_common.embed import DTYPES, MANIFEST_SET, clipset_inputs, embed, manifest_inputs
from vtcav_common.models.controls import HELP as CONTROL_HELP, parse_control
from vtcav_common.embed.pooling import HELP as POOL_HELP, parse_pool
from vtcav_common.formats.records import looks_like_manifest

app = frame.make_app(
    "vt-embed",
    help="Run a video model over concept clips (a clip-set HDF5 from vt-concepts) and/or the videos "
         "of a labels manifest (several inputs go into one file), and write the activations of the named "
         "layers, from **one forward pass per batch**, to an embeddings HDF5. With `--target CLASS`, also "
         "the gradient of that class's logit at every named layer (of the sets `--grad-set` names), from "
         "**one backward pass per batch**. Streams batch by batch, so "
         "memory stays bounded. `--list-layers` shows the layer names, types, output shapes and channel "
         "axes to choose from.",
    epilog="Examples:\n\n"
           "    vt-embed --model r3d_18 --list-layers    # the architecture alone answers\n\n"
           "    vt-embed concepts.h5 --model swin3d_t --weights swin3d_t.pth --layers features.4,features.6 "
           "-o acts.h5\n\n"
           "    vt-embed world/labels.jsonl --label right --split test --weights weights/classifier.pt "
           "--layers block2,block3 --target right -o grads.h5\n\n"
           "    vt-embed concepts.h5 world/labels.jsonl --label right --split test --weights "
           "weights/classifier.pt --target right --grad-set inputs -o emb.h5    # one run for vt-cav and vt-score\n\n"
           "    vt-embed concepts.h5 --set ball_right --set random_00 --model pkg.models:my_net --weights net.pt "
           "--layers stage3 --target 'playing tennis' --dtype float32 -o acts.h5\n\n"
           "    vt-embed concepts.h5 --weights weights/classifier.pt --control cascade:block3 --seed 0 "
           "-o acts_c3.h5    # a sanity control: the same chain under a randomised model\n\n"
           "Models: a torchvision video architecture (swin3d_t/s/b, r3d_18, mc3_18, r2plus1d_18, s3d, "
           "mvit_v1_b, mvit_v2_s) with a local state dict; `package.module:factory` with a state dict; a "
           "TorchScript or torch.export (.pt2) file; `mmaction:CONFIG` with a checkpoint. See docs/models.md.",
)


@app.command()
def main_command(
    inputs: Optional[List[str]] = typer.Argument(None, help="Clip-set HDF5 files (vt-concepts) and/or labels "
                                                             "manifests (.jsonl, '-' for stdin), embedded into one "
                                                             "file. Not needed with --list-layers."),
    output: Optional[Path] = options.output(None, help="Embeddings HDF5 to write."),
    model: Optional[str] = options.model(),
    weights: Optional[str] = options.weights(),
    layers: Optional[str] = typer.Option(None, "--layers", "-l", help="Comma-separated layer names."),
    target: Optional[str] = typer.Option(None, "--target", "-t",
                                         help="Class (name or index) whose logit's gradients to record."),
    grad_sets: List[str] = typer.Option([], "--grad-set", metavar="SET",
                                        help="With --target: record gradients only for these sets (names or "
                                             "patterns, repeatable; default: every set), e.g. --grad-set inputs "
                                             "when concept clips and class videos are embedded in one run."),
    sets: List[str] = options.sets(help="Clip set to embed, or a pattern such as 'ball_*' (repeatable; default: all)."),
    labels: List[str] = options.labels(help="Manifest: only videos with this label (repeatable)."),
    split: Optional[str] = options.split(help="Manifest: only videos of this split."),
    name: str = typer.Option(MANIFEST_SET, "--name", help="Manifest: name of the output set."),
    dtype: str = typer.Option("float16", "--dtype", help="Storage type of activations: float16 or float32."),
    grad_dtype: str = typer.Option("float32", "--grad-dtype", help="Storage type of gradients."),
    batch_size: int = options.batch_size(8),
    compress: bool = typer.Option(False, "--compress", help="gzip the arrays (smaller files, slower to write "
                                                            "and to read back)."),
    device: str = options.device(),
    precision: str = typer.Option("auto", "--precision",
                                  help="auto (bf16 autocast on CUDA, fp32 on the CPU), fp32, bf16 or fp16. "
                                       "Half precision runs the forward under autocast; the logit and "
                                       "everything stored are fp32."),
    seed: int = options.seed(help="Random seed (recorded; the computation is deterministic)."),
    frames: Optional[int] = options.frames(help="Override the model's clip length."),
    size: Optional[str] = options.size(help="Override the model's frame size (square): H."),
    mean: Optional[str] = options.mean(),
    std: Optional[str] = options.std(),
    class_names: Optional[Path] = options.class_names(),
    trust_checkpoint: bool = options.trust_checkpoint(),
    list_layers: bool = typer.Option(False, "--list-layers", help="Print layer names, types, shapes; exit."),
    all_layers: bool = typer.Option(False, "--all", help="With --list-layers: every module, not the usual ones."),
    shard: Optional[str] = options.shard(),
    pool: Optional[str] = typer.Option(None, "--pool", metavar="TxHxW|time|space", help=POOL_HELP),
    control: Optional[str] = typer.Option(None, "--control", help=CONTROL_HELP,
                                          metavar="CONTROL"),
    quiet: bool = options.quiet(),
    version: bool = options.version(),
) -> None:
    messages.set_quiet(quiet)
    part = sharding.parse_shard(shard)   # a bad K/N is a usage error before any file is read
    if dtype not in DTYPES or grad_dtype not in DTYPES:
        raise errors.UsageError(f"--dtype and --grad-dtype take {' or '.join(DTYPES)}, got '{dtype}'/'{grad_dtype}'")
    pooling = parse_pool(pool)
    chosen_control = parse_control(control, seed)
    from vtcav_common.models.layers import parse_layer_list, usual_layers

    chosen = parse_layer_list(layers)
    loaded = options.load_model_options(model, weights, class_names, trust_checkpoint, device, frames, size, mean, std,
                                        need_weights=not list_layers)   # the architecture alone lists its layers
    if list_layers:
        _print_layers(loaded, all_layers)
        return
    if not inputs or output is None:
        raise errors.UsageError("give INPUTS and -o OUTPUT.h5 (or --list-layers)")
    if grad_sets and target is None:
        raise errors.UsageError("--grad-set chooses the sets whose gradients --target records; give --target")
    if not chosen:
        chosen = usual_layers(loaded)
        messages.info(f"vt-embed: no --layers: the model's usual layers {','.join(chosen)} (see --list-layers)")
    input_sets = _input_sets(inputs, loaded, sets, labels, split, name)
    if grad_sets:   # --grad-set 'inputs': only these sets get a backward pass
        grad_sets = selection.select([s.name for s in input_sets], grad_sets, "set", ", ".join(inputs))
    # --shard: every set keeps its name and gets its block of rows (clip index order, whole batches)
    input_sets, shard_identity = sharding.shard_input_sets(input_sets, part, batch_size)
    summary = embed(loaded, chosen, input_sets, output, target=target, dtype=dtype, grad_dtype=grad_dtype,
                    batch_size=batch_size, seed=seed, compress=compress, precision=precision, shard=shard_identity,
                    pool=pooling, grad_sets=grad_sets or None, control=chosen_control,
                    inputs_name=", ".join(Path(i).name if i != "-" else "<stdin>" for i in inputs))
    messages.info(f"vt-embed: wrote {summary['clips']} clips x {summary['layers']} layers"
             f"{' with gradients' if summary['target_index'] is not None else ''} to {output}")


def _input_sets(inputs: list[str], loaded, sets: list[str], labels: list[str], split: Optional[str],
                name: str) -> list:
    """The sets of every input: a manifest's videos as one set, a clip-set file's sets (or --set's)."""
    manifests = [i for i in inputs if looks_like_manifest(i) or i == files.STDIO]
    if inputs.count(files.STDIO) > 1:
        raise errors.UsageError("'-' (stdin) can be given once")
    if sets and len(manifests) == len(inputs):
        raise errors.UsageError("--set selects clip sets of an HDF5 clip file, not manifest videos")
    if (labels or split) and not manifests:
        raise errors.UsageError("--label/--split filter a labels manifest (.jsonl), not a clip-set file")
    input_sets = []
    for source in inputs:
        if source in manifests:
            input_sets += manifest_inputs(source, loaded.input_spec.frames, labels, split, name)
        else:
            input_sets += clipset_inputs(source, selection.expand(selection.hdf5_set_names(source, "concepts"),
                                                                  sets, "set", source))  # --set 'ball_*'
    return input_sets


def _print_layers(loaded, every: bool) -> None:
    from vtcav_common.models.layers import default_layers, describe_layers, format_table

    infos = describe_layers(loaded)
    names = list(infos) if every else [n for n in default_layers(loaded.module) if infos[n].calls]
    for line in format_table([infos[n] for n in names]):
        print(line)


main = frame.entry(app, "vt-embed")
