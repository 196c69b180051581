"""The same TCAV job with the vtcav commands and with captum, against the model's own floor.

    .venv/bin/python bench/bench_tcav.py [--clips 40] [--inputs 50] [--random-sets 10] [--repeats 3]
                                         [--captum-repeats N] [--base DIR] [--skip-captum]

Job: the project's classifier, 3 layers, 2 concepts (the ball moving right / left),
R random sets plus the random-vs-random null, ``--inputs`` inputs of class "right".
Everything is timed as what a user runs, each a separate process, start-up included:

- floor:  one process that imports torch, loads the model, reads the same clips and videos
          and runs the forward pass over every clip and forward/backward over the inputs;
- chain:  the commands vt-embed (activations), vt-embed (gradients), vt-cav, vt-score and
          vt-stats, one process each, writing and reading the files a user would; and the
          same with one vt-embed over the clips and the videos (``--grad-set inputs``);
- captum: one process running ``captum.concept.TCAV.interpret`` over the same sets, with an
          empty cache each time (captum reuses the activations and CAVs it saved).

Each is repeated ``--repeats`` times (median and spread). ``--base DIR`` also times the chain
with the code of DIR (a git worktree of an earlier commit) for a before/after table. Also
prints the agreement of the two tools' TCAV scores and of vtcav's SGD CAVs with FastCAV.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
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


def _load():
    import torch
    from vtcav_common.models import load_model
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    return load_model(MODEL, str(WEIGHTS))


def _tensors(loaded, labels: Path, concepts: Path):
    """Every clip set and the inputs as preprocessed tensors (for the floor and captum)."""
    import torch
    from vtcav_common.formats import clips as clipsets
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


def chain(labels: Path, concepts: Path, work: Path, pythonpath: str | None = None, one_embed: bool = False) -> dict:
    """The commands as a user runs them; each step's wall time, start-up included.

    ``one_embed``: one vt-embed run over the concept clips and the class videos together
    (``--grad-set inputs``), as a Makefile would do it, instead of one run for each.
    """
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("BENCH_THREADS", "2"))
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    model = ["--model", MODEL, "--weights", str(WEIGHTS), "--layers", ",".join(LAYERS), "--seed", "0",
             "--batch-size", "16", "-q"]
    videos = [str(labels), "--label", "right", "--split", "test", "--target", "right"]
    acts, grads = (work / "emb.h5", work / "emb.h5") if one_embed else (work / "acts.h5", work / "grads.h5")
    steps = {"embed": [tool("vt-embed"), *model, str(concepts), *videos, "--grad-set", "inputs", "-o", str(acts)]} \
        if one_embed else {
            "embed": [tool("vt-embed"), *model, str(concepts), "-o", str(acts)],
            "embed-grads": [tool("vt-embed"), *model, *videos, "-o", str(grads)]}
    steps.update({
        "cav": [tool("vt-cav"), str(acts), "-o", str(work / "cavs.h5"), "--seed", "0", "-q"],
        "score": [tool("vt-score"), str(work / "cavs.h5"), str(grads), "-o", str(work / "scores.jsonl"), "-q"],
        "stats": [tool("vt-stats"), str(work / "scores.jsonl"), "-o", str(work / "stats.jsonl"), "-q"],
    })
    times, cpu = {}, 0.0
    for name, command in steps.items():
        start, cpu_start = time.perf_counter(), _children_cpu()
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        times[name] = time.perf_counter() - start
        cpu += _children_cpu() - cpu_start
        if result.returncode != 0:
            raise SystemExit(f"{name} failed: {result.stderr[-2000:]}")
    times["seconds"] = sum(times.values())
    times["cpu"] = cpu
    return times


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes: on a shared machine the
    wall clock mostly measures the other jobs, CPU time much less so."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process(job: str, labels: Path, concepts: Path, work: Path) -> dict:
    """``job`` in a fresh process: its wall time from start to exit, and what it reports."""
    start, cpu_start = time.perf_counter(), _children_cpu()
    result = subprocess.run([sys.executable, __file__, "--job", job, "--labels", str(labels), "--concepts",
                             str(concepts), "--work", str(work)], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu_start
    if result.returncode != 0:
        raise SystemExit(f"{job} failed: {result.stderr[-2000:]}")
    return {"process": wall, "cpu": cpu, **json.loads(result.stdout.strip().splitlines()[-1])}


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
    # A fresh cache each run: captum reuses the activations and CAVs it finds in save_path,
    # which would time a lookup instead of the job.
    save_path = work / "captum"
    shutil.rmtree(save_path, ignore_errors=True)
    tcav = TCAV(loaded.module, LAYERS, save_path=str(save_path))
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


def _spread(values: list[float]) -> str:
    return f"{np.median(values):7.2f} s  [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=40, help="clips per concept and random set")
    parser.add_argument("--inputs", type=int, default=50, help="inputs of the target class")
    parser.add_argument("--random-sets", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--base", default="", help="also time the chain with the code of this worktree")
    parser.add_argument("--captum-repeats", type=int, help="captum runs (default: --repeats; each takes minutes)")
    parser.add_argument("--skip-captum", action="store_true")
    parser.add_argument("--job", choices=["floor", "captum"], help=argparse.SUPPRESS)
    parser.add_argument("--labels", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--concepts", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:   # a child process: one job, its result as JSON on the last line
        result = floor_job(args.labels, args.concepts) if args.job == "floor" else \
            captum_job(args.labels, args.concepts, args.work)
        print(json.dumps(result))
        return
    os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        labels, concepts = prepare(work, args.clips, args.inputs, args.random_sets)
        n_clips = (2 + args.random_sets) * args.clips
        from vtcav_common.tcav.fitting import null_pairs   # vt-cav's default null (--null-partners)

        n_null = len(null_pairs(args.random_sets))
        cavs = len(LAYERS) * (2 * args.random_sets + n_null)
        print(f"job: {len(LAYERS)} layers, 2 concepts x {args.random_sets} random sets + {n_null} null "
              f"= {cavs} CAVs, {n_clips} clips, {args.inputs} inputs; torch threads "
              f"{os.environ.get('BENCH_THREADS', '2')}; {args.repeats} repeats (median [min-max]); "
              f"machine load {os.getloadavg()[0]:.1f} at start (shared machine: times are indicative)")
        runs: dict[str, list[dict]] = {"floor": [], "chain": [], "one": [], "before": [], "captum": []}
        for _ in range(args.repeats):
            runs["floor"].append(_process("floor", labels, concepts, work))
            runs["chain"].append(chain(labels, concepts, work))
            (work / "one").mkdir(exist_ok=True)
            runs["one"].append(chain(labels, concepts, work / "one", one_embed=True))
            if args.base:
                (work / "before").mkdir(exist_ok=True)
                runs["before"].append(chain(labels, concepts, work / "before", args.base))
        floor = float(np.median([r["process"] for r in runs["floor"]]))
        floor_cpu = float(np.median([r["cpu"] for r in runs["floor"]]))
        compute = float(np.median([r["seconds"] for r in runs["floor"]]))
        print(f"floor process  : {_spread([r['process'] for r in runs['floor']])}  cpu {floor_cpu:.1f} s  (torch "
              f"import, model, data; of which forward/backward {compute:.2f} s)")
        for label, key in (("chain", "chain"), ("chain, 1 embed", "one"), ("chain (before)", "before")):
            if runs[key]:
                total = [r["seconds"] for r in runs[key]]
                steps = ", ".join(f"{k} {np.median([r[k] for r in runs[key]]):.2f}"
                                  for k in runs[key][0] if k not in ("seconds", "cpu"))
                cpu = float(np.median([r["cpu"] for r in runs[key]]))
                print(f"{label:15s}: {_spread(total)}  = {np.median(total) / floor:.2f} x floor;  cpu {cpu:.1f} s "
                      f"= {cpu / floor_cpu:.2f} x floor  ({steps})")
        if not args.skip_captum:
            for _ in range(args.captum_repeats or args.repeats):
                runs["captum"].append(_process("captum", labels, concepts, work))
            theirs = [r["process"] for r in runs["captum"]]
            theirs_cpu = float(np.median([r["cpu"] for r in runs["captum"]]))
            print(f"captum process : {_spread(theirs)}  = {np.median(theirs) / floor:.2f} x floor;  cpu "
                  f"{theirs_cpu:.1f} s  (interpret {np.median([r['seconds'] for r in runs['captum']]):.2f} s)")
            for label, key in (("the vtcav chain", "chain"), ("the chain with one vt-embed", "one")):
                ours = float(np.median([r["seconds"] for r in runs[key]]))
                ours_cpu = float(np.median([r["cpu"] for r in runs[key]]))
                print(f"speed-up of {label} over captum: {np.median(theirs) / ours:.1f} x wall, "
                      f"{theirs_cpu / ours_cpu:.1f} x cpu")
            agree = agreement(work, runs["captum"][-1]["scores"])
            print(f"TCAV score agreement over {agree['pairs']} (concept, random, layer): mean |diff| "
                  f"{agree['mean_abs_score_diff']:.3f}, max {agree['max_abs_score_diff']:.3f} "
                  f"(each trains its own CAV)")
            print(f"SGD CAV vs mean-difference CAV (FastCAV): mean cosine {agree['fastcav_cosine_concept']:.3f} "
                  f"(concept CAVs), {agree['fastcav_cosine_null']:.3f} (null CAVs)")


if __name__ == "__main__":
    main()
