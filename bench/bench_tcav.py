"""The same TCAV job with vtcav and with captum, against the model's own floor.

    .venv/bin/python bench/bench_tcav.py [--clips 40] [--inputs 50] [--random-sets 10]

Job: the project's classifier, 3 layers, 2 concepts (the ball moving right / left),
R random sets plus the random-vs-random null, ``--inputs`` inputs of class "right".
Each run happens in a fresh child process (so its peak memory is its own):

- floor:  the model's pure forward over every clip + forward/backward over the inputs;
- vtcav:  vt-embed (activations; gradients) -> vt-cav -> vt-score, the commands' own code
          called in-process, writing the same HDF5 files the commands write;
- captum: ``captum.concept.TCAV.interpret`` over the same experimental sets.

Prints the times, the ratio, vtcav's peak memory, and the agreement of the two TCAV
scores and of vtcav's SGD CAVs with the mean-difference CAV (FastCAV).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["block1", "block2", "block3"]
MODEL = "vtcav_common.models.tiny:motion_c3d"
WEIGHTS = REPO / "weights" / "classifier.pt"


def tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def prepare(work: Path, clips: int, inputs: int, random_sets: int) -> tuple[Path, Path]:
    """A world, concept and random clip sets (from the world's true boxes), untimed."""
    world = work / "world"
    run = lambda *a, **k: subprocess.run([str(x) for x in a], check=True, capture_output=True, **k)  # noqa: E731
    run(tool("vt-synth"), world, "--seed", "5", "--train-per-class", max(8, clips // 3),
        "--test-per-class", inputs, "--classes", "left,right,up")
    labels, gt, concepts = world / "labels.jsonl", world / "gt.jsonl", work / "concepts.h5"
    common = ["--videos", labels, "--split", "train", "--frames", "16", "--size", "64", "--seed", "0"]
    for label in ("right", "left"):
        run(tool("vt-concepts"), "spatiotemporal", gt, *common, "--class", "ball", "--label", label,
            "--max-clips", clips, "--clips-per-track", "4", "--name", f"ball_{label}", "-o", concepts,
            *(["--append"] if label == "left" else []))
    run(tool("vt-concepts"), "random", *common, "--exclude-label", "right", "--sets", random_sets,
        "--clips-per-set", clips, "-o", concepts, "--append")
    return labels, concepts


def _in_child(fn, *args):
    """Run ``fn`` in a fresh process; return (its result, its peak RSS in MB)."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_measured, (fn, *args))


def _measured(fn, *args):
    result = fn(*args)
    return result, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load():
    import torch
    from vtcav_common.models import load_model
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    return load_model(MODEL, str(WEIGHTS))


def _tensors(loaded, labels: Path, concepts: Path):
    """Every clip set and the inputs as preprocessed tensors (for the floor and captum)."""
    import torch
    from vtcav_common import clipsets
    from vtcav_common.embed import manifest_inputs, to_tensor
    from vtcav_common.models.base import preprocess

    sets = {}
    for info in clipsets.list_sets(str(concepts)):
        sets[info.name] = preprocess(clipsets.read_clips(str(concepts), info.name, 0, info.n), loaded.input_spec)
    (inputs,) = manifest_inputs(str(labels), loaded.input_spec.frames, ["right"], "test")
    x = torch.cat([to_tensor(b, loaded, torch.device("cpu")) for b in inputs.batches(16)])
    return sets, x


def floor_job(labels: Path, concepts: Path) -> dict:
    import torch
    loaded = _load()
    sets, inputs = _tensors(loaded, labels, concepts)
    target = loaded.class_index("right")
    start = time.perf_counter()
    with torch.no_grad():
        for x in sets.values():
            for batch in x.split(16):
                loaded.module(batch)
    for batch in inputs.split(16):
        batch = batch.clone().requires_grad_(True)
        loaded.module(batch)[:, target].sum().backward()
    return {"seconds": time.perf_counter() - start}


def vtcav_job(labels: Path, concepts: Path, work: Path) -> dict:
    from tools.vt_cav import cav
    from tools.vt_score import score
    from vtcav_common import cli
    from vtcav_common.embed import clipset_inputs, embed, manifest_inputs

    cli.set_quiet(True)
    loaded = _load()
    start = time.perf_counter()
    embed(loaded, LAYERS, clipset_inputs(str(concepts), []), work / "acts.h5", batch_size=16)
    embed(loaded, LAYERS, manifest_inputs(str(labels), loaded.input_spec.frames, ["right"], "test"),
          work / "grads.h5", target="right", batch_size=16)
    t_embed = time.perf_counter() - start
    cav(embeddings=[work / "acts.h5"], output=work / "cavs.h5", layers="", concepts=[], classifier="sgd",
        relative=[], relative_resamples=0, agreement=False, seed=0, quiet=True, version=False)
    t_cav = time.perf_counter() - start - t_embed
    score(cavs=work / "cavs.h5", gradients=work / "grads.h5", output=str(work / "scores.jsonl"), set_name="",
          permute_gradients=False, seed=0, quiet=True, version=False)
    total = time.perf_counter() - start
    return {"seconds": total, "embed": t_embed, "cav": t_cav, "score": total - t_embed - t_cav}


def captum_job(labels: Path, concepts: Path, work: Path) -> dict:
    import random

    import torch
    from captum.concept import TCAV, Concept

    loaded = _load()
    sets, inputs = _tensors(loaded, labels, concepts)
    random.seed(0)
    torch.manual_seed(0)
    start = time.perf_counter()
    ids = {name: i for i, name in enumerate(sets)}
    concept = {name: Concept(ids[name], name, torch.utils.data.DataLoader(x, batch_size=16))
               for name, x in sets.items()}
    randoms = sorted(n for n in sets if n.startswith("random"))
    experiments = [[concept[c], concept[r]] for c in ("ball_right", "ball_left") for r in randoms]
    experiments += [[concept[r], concept[randoms[(i + 1) % len(randoms)]]] for i, r in enumerate(randoms)]
    tcav = TCAV(loaded.module, LAYERS, save_path=str(work / "captum"))
    result = tcav.interpret(inputs, experimental_sets=experiments, target=loaded.class_index("right"))
    seconds = time.perf_counter() - start
    scores = {}
    for exp in experiments:
        key = "-".join(str(c.id) for c in exp)
        for layer in LAYERS:
            scores[f"{exp[0].name}|{exp[1].name}|{layer}"] = float(result[key][layer]["sign_count"][0])
    return {"seconds": seconds, "scores": scores}


def agreement(work: Path, captum_scores: dict) -> dict:
    """vtcav vs captum TCAV scores per (concept, random, layer); SGD vs FastCAV cosine."""
    ours = {}
    for line in (work / "scores.jsonl").read_text().splitlines():
        r = json.loads(line)
        ours[f"{r['concept']}|{r['against']}|{r['layer']}"] = r["score"]
    common = sorted(set(ours) & set(captum_scores))
    diffs = np.array([abs(ours[k] - captum_scores[k]) for k in common])
    subprocess.run([tool("vt-cav"), str(work / "acts.h5"), "-o", str(work / "cavs_agree.h5"), "--agreement", "-q"],
                   check=True)
    import h5py
    with h5py.File(work / "cavs_agree.h5") as f:
        cosines = np.concatenate([f["layers"][l]["fastcav_cosine"][()] for l in LAYERS])
        kinds = np.concatenate([[k.decode() for k in f["layers"][l]["kind"][()]] for l in LAYERS])
    return {"pairs": len(common), "mean_abs_score_diff": float(diffs.mean()),
            "max_abs_score_diff": float(diffs.max()),
            "fastcav_cosine_concept": float(cosines[kinds == "concept"].mean()),
            "fastcav_cosine_null": float(cosines[kinds == "null"].mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=40, help="clips per concept and random set")
    parser.add_argument("--inputs", type=int, default=50, help="inputs of the target class")
    parser.add_argument("--random-sets", type=int, default=10)
    parser.add_argument("--skip-captum", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        labels, concepts = prepare(work, args.clips, args.inputs, args.random_sets)
        n_clips = (2 + args.random_sets) * args.clips
        cavs = len(LAYERS) * (2 * args.random_sets + args.random_sets)
        print(f"job: {len(LAYERS)} layers, 2 concepts x {args.random_sets} random sets + {args.random_sets} null "
              f"= {cavs} CAVs, {n_clips} clips, {args.inputs} inputs; torch threads "
              f"{os.environ.get('BENCH_THREADS', '2')}")
        floor, _ = _in_child(floor_job, labels, concepts)
        ours, ours_rss = _in_child(vtcav_job, labels, concepts, work)
        print(f"floor (model forward + backward only): {floor['seconds']:.2f} s")
        print(f"vtcav:  {ours['seconds']:.2f} s  (embed {ours['embed']:.2f}, cav {ours['cav']:.2f}, "
              f"score {ours['score']:.2f})  = {ours['seconds'] / floor['seconds']:.2f} x floor; "
              f"peak RSS {ours_rss:.0f} MB")
        if not args.skip_captum:
            theirs, theirs_rss = _in_child(captum_job, labels, concepts, work)
            print(f"captum: {theirs['seconds']:.2f} s  = {theirs['seconds'] / floor['seconds']:.2f} x floor; "
                  f"peak RSS {theirs_rss:.0f} MB")
            print(f"speed-up vtcav vs captum: {theirs['seconds'] / ours['seconds']:.1f} x")
            agree = agreement(work, theirs["scores"])
            print(f"TCAV score agreement over {agree['pairs']} (concept, random, layer): mean |diff| "
                  f"{agree['mean_abs_score_diff']:.3f}, max {agree['max_abs_score_diff']:.3f} (each trains its own CAV)")
            print(f"SGD CAV vs mean-difference CAV (FastCAV): mean cosine {agree['fastcav_cosine_concept']:.3f} "
                  f"(concept CAVs), {agree['fastcav_cosine_null']:.3f} (null CAVs)")


if __name__ == "__main__":
    main()
