"""vt-score: TCAV scores of a target class along every CAV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from vtcav_common import cli, options
from vtcav_common.cavs_file import read_cavs
from vtcav_common.embeddings import Embeddings, require_same_model
from vtcav_common.errors import IncompatibleError, VtcavError
from vtcav_common.records import write_records
from vtcav_common.scoring import ConstancyCheck, directional_derivatives, permute_features, tcav_scores

app = cli.make_app(
    "vt-score",
    help="Score a target class along every CAV: for each input, the directional derivative of "
         "the class logit along the CAV (gradient . CAV, gradients from `vt-embed --target`). "
         "Writes one JSONL record per CAV: the TCAV score (fraction of inputs with a positive "
         "derivative) and the magnitude (mean derivative). Refuses CAVs and gradients from "
         "different models, layers or input sampling.",
    epilog="Examples:\n\n"
           "    vt-score cavs.h5 grads.h5 > scores.jsonl\n\n"
           "    vt-score cavs.h5 grads.h5 -o scores.jsonl && vt-stats scores.jsonl\n\n"
           "    vt-score cavs.h5 grads.h5 --permute-gradients   # negative control: nothing should be significant",
)


@app.command()
def score(
    cavs: Path = typer.Argument(..., help="CAV file from vt-cav."),
    gradients: Path = typer.Argument(..., help="Embeddings file from vt-embed --target CLASS (the class's inputs)."),
    output: str = options.output("-", help="JSONL output ('-' for stdout)."),
    set_name: str = typer.Option("", "--set", help="Set of inputs in the gradients file (default: the one with gradients)."),
    permute_gradients: bool = typer.Option(False, "--permute-gradients",
                                           help="Negative control: shuffle each input's gradient features and "
                                                "flip their signs at random (the expected derivative along any "
                                                "CAV is then zero)."),
    seed: int = typer.Option(0, "--seed", help="Seed for --permute-gradients."),
    quiet: bool = options.quiet(),
    version: bool = options.version(),
) -> None:
    cli.set_quiet(quiet)
    cav_provenance, layers = read_cavs(cavs)
    with Embeddings(gradients) as grads:
        require_same_model(str(cavs), cav_provenance, str(gradients), grads.provenance)
        target = grads.provenance.get("target")
        if target is None:
            raise VtcavError(f"{gradients}: has no gradients (run vt-embed with --target CLASS)")
        with_grads = [s.name for s in grads.sets() if s.has_grads]
        name = set_name or (with_grads[0] if len(with_grads) == 1 else "")
        if not name:
            raise cli.UsageError(f"{gradients}: choose the inputs with --set (sets with gradients: "
                                 f"{', '.join(with_grads) or 'none'})")
        if name not in with_grads:
            raise VtcavError(f"{gradients}: set '{name}' has no gradients")
        rng = np.random.default_rng(seed)
        records = []
        for layer_cavs in layers:
            layer = layer_cavs.layer
            if layer not in grads.layers:
                raise IncompatibleError(f"{gradients}: no gradients at layer '{layer}' of the CAVs in {cavs}")
            if grads.feature_size(layer) != layer_cavs.vectors.shape[1]:
                raise IncompatibleError(f"{gradients}: layer '{layer}' has a different size than in {cavs}")
            constancy = ConstancyCheck()
            batches = constancy.watch(grads.iter_flat(name, layer, "grads"))
            if permute_gradients:
                batches = (permute_features(b, rng) for b in batches)
            derivatives = directional_derivatives(batches, layer_cavs.vectors)
            sign_count, magnitude = tcav_scores(derivatives)
            if constancy.constant and derivatives.shape[0] > 1:
                cli.warn(f"{gradients}: the gradient at layer '{layer}' is the same for every input (the layer "
                         f"feeds a linear read-out); its TCAV scores can only be 0 or 1")
            for row, s, m in zip(layer_cavs.table, sign_count, magnitude):
                records.append({
                    "target": target, "layer": layer, "concept": row["concept"], "against": row["against"],
                    "kind": row["kind"], "replicate": int(row["replicate"]), "score": round(float(s), 6),
                    "magnitude": float(m), "cav_accuracy": round(float(row["accuracy"]), 6),
                    "n_inputs": int(derivatives.shape[0]), "classifier": cav_provenance.get("classifier"),
                    "model": cav_provenance.get("model", {}).get("arch"),
                    **({"control": "permuted-gradients"} if permute_gradients else {})})
    with cli.open_text_output(output) as out:
        write_records(records, out)
    n_inputs = records[0]["n_inputs"] if records else 0
    cli.info(f"vt-score: {len(records)} scores for target '{target}' over {n_inputs} inputs")


main = cli.entry(app, "vt-score")
