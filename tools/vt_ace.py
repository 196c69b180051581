"""vt-ace: 3D-ACE concept discovery from supervoxels, TCAV ranking, faithfulness, contact sheets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from vtcav_common import cli
from vtcav_common import options as opt
from vtcav_common import shard as sharding
from vtcav_common.ace.candidates import CANDIDATE_SET, select_videos, write_candidates
from vtcav_common.ace.sheets import write_sheets
from vtcav_common.ace.supervoxels import DEFAULT_FILL, SegmentParams, parse_resolutions
from vtcav_common.clipsets import Sampling
from vtcav_common.records import read_jsonl, write_records

# The model-side modules (torch, torchvision, scikit-learn) are imported by the commands that
# need them, so that `supervoxels`, `sheet` and bad input answer without loading them.

app = cli.make_app(
    "vt-ace",
    help="3D-ACE (Ji et al. 2022): discover a class's concepts automatically. Cut the class's videos "
         "into supervoxels (SLIC over time and space, three resolutions), cluster their activations "
         "into concepts, rank the concepts by TCAV against random sets, and check the ranking's "
         "faithfulness by adding and removing concepts from test videos.",
    epilog="Examples:\n\n"
           "    vt-ace supervoxels world/labels.jsonl --label right --split train -o cand.h5\n\n"
           "    vt-concepts random --videos world/labels.jsonl --split train -R 10 -o random.h5\n\n"
           "    vt-ace discover cand.h5 --random random.h5 --videos world/labels.jsonl --target right "
           "--model vtcav_common.models.tiny:motion_c3d --weights weights/classifier.pt --layer block3 "
           "-o concepts.h5 --ranking ranking.jsonl\n\n"
           "    vt-ace faithfulness concepts.h5 ranking.jsonl --videos world/labels.jsonl --split test "
           "--model vtcav_common.models.tiny:motion_c3d --weights weights/classifier.pt > faith.jsonl\n\n"
           "    vt-ace sheet concepts.h5 --ranking ranking.jsonl -o sheets/",
    single=False,
)


def _model_options(model, weights, class_names, trust_checkpoint, device):
    from vtcav_common.models import load_model

    return load_model(model, weights, class_names=str(class_names) if class_names else None,
                      trust_checkpoint=trust_checkpoint, device=device)


@app.command(epilog="Examples:\n\n"
                    "    vt-ace supervoxels world/labels.jsonl --label right --split train -o cand.h5\n\n"
                    "    vt-ace supervoxels clips/ --resolutions 10,30 --compactness 5 -o cand.h5")
def supervoxels(
    videos: str = typer.Argument(..., help="A labels manifest (labels.jsonl) or a folder of videos."),
    out: Path = opt.output(..., help="Clip-set HDF5 of candidate supervoxel clips."),
    labels: List[str] = opt.labels(help="Only videos with this label (the class to explain; repeatable)."),
    split: Optional[str] = opt.split(),
    max_videos: Optional[int] = typer.Option(None, "--max-videos", min=1, help="At most this many videos."),
    resolutions: str = typer.Option("15,50,80", "--resolutions", help="SLIC segment counts, coarse to fine."),
    compactness: float = typer.Option(10.0, "--compactness", help="SLIC compactness: higher = more cube-like "
                                                                  "supervoxels, lower = they follow colour."),
    sigma: float = typer.Option(0.0, "--sigma", min=0.0, help="SLIC Gaussian smoothing before segmenting."),
    min_fraction: float = typer.Option(0.001, "--min-fraction", help="Drop supervoxels under this share of "
                                                                     "the volume."),
    max_iou: float = typer.Option(0.5, "--max-iou", help="Drop a supervoxel whose 3D IoU with one already kept "
                                                         "exceeds this."),
    fill: int = typer.Option(DEFAULT_FILL, "--fill", help="Grey level outside the supervoxel."),
    frames: int = opt.frames(16, help="Frames per video, sampled uniformly."),
    size: str = opt.size("64", help="Clip size: H (square) or HxW."),
    name: str = typer.Option(CANDIDATE_SET, "--name", help="Name of the candidate set in OUT."),
    shard: Optional[str] = opt.shard(),
    quiet: bool = opt.quiet(),
    version: bool = opt.version(),
) -> None:
    """Cut each video into supervoxels and write each as a clip on grey (the candidates)."""
    cli.set_quiet(quiet)
    part = sharding.parse_shard(shard)
    params = SegmentParams(parse_resolutions(resolutions), compactness, sigma, min_fraction, max_iou, fill)
    sampling = Sampling(frames, opt.parse_size(size), 1)
    chosen = [v for label in dict.fromkeys(labels or [None]) for v in select_videos(videos, label, split)]
    chosen = chosen[:max_videos] if max_videos else chosen
    label = labels[0] if len(labels) == 1 else None
    provenance = {"videos_source": Path(videos).name, "split": split}
    if len(labels) > 1:
        provenance["labels"] = labels
    if part is not None:   # a contiguous block of the chosen videos, in order (vtcav_common.shard)
        provenance["shard"] = part.identity({"videos": len(chosen)})
        chosen = part.take(chosen)
    started = time.perf_counter()
    count = write_candidates(chosen, out, params, sampling, label, name=name, provenance=provenance)
    cli.info(f"vt-ace: {count} supervoxel clips from {len(chosen)} videos -> {out} "
             f"({time.perf_counter() - started:.1f} s)")


@app.command(epilog="Example:\n\n"
                    "    vt-ace discover cand.h5 --random random.h5 --videos world/labels.jsonl --target right \\\n"
                    "        --model vtcav_common.models.tiny:motion_c3d --weights weights/classifier.pt \\\n"
                    "        --layer block3 --k 8 -o concepts.h5 --ranking ranking.jsonl\n\n"
                    "Then, with the tools:\n\n"
                    "    vt-embed concepts.h5 --weights weights/classifier.pt --layers block3 -o acts.h5 && "
                    "vt-cav acts.h5 -o cavs.h5")
def discover(
    candidates: str = typer.Argument(..., help="Candidates from vt-ace supervoxels."),
    random: str = typer.Option(..., "--random", help="Random sets (vt-concepts random) with the same --frames/--size."),
    videos: str = typer.Option(..., "--videos", help="Labels manifest: the class's videos give the TCAV gradients."),
    target: str = opt.target(..., help="The class whose concepts are discovered."),
    out: Path = opt.output(..., help="Clip-set HDF5 of the concepts (ace_00, ...) and random sets."),
    ranking: str = typer.Option("-", "--ranking", help="Ranking JSONL ('-' for stdout)."),
    model: Optional[str] = opt.model(),
    weights: Optional[str] = opt.weights(),
    layer: str = typer.Option(..., "--layer", "-l", help="The layer to embed, cluster and score at."),
    k: int = typer.Option(8, "--k", help="k-means clusters."),
    min_members: int = typer.Option(5, "--min-members", help="Drop clusters with fewer candidates."),
    max_members: int = typer.Option(40, "--max-members", help="Keep this many members nearest the centre."),
    grid: int = typer.Option(2, "--grid", min=0, help="Pool each channel to grid^3 cells for clustering "
                                                      "(0 = full activations)."),
    split: Optional[str] = opt.split("train", help="Split of the class's videos for the gradients ('' for all)."),
    classifier: str = typer.Option("sgd", "--classifier",
                                   help="CAV classifier: sgd (the TCAV reference), logistic or mean (FastCAV)."),
    correction: str = typer.Option("bonferroni", "--correction",
                                   help="Multiple-testing correction: bonferroni, holm, bh or none."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level after correction."),
    set_name: str = typer.Option(CANDIDATE_SET, "--set", help="The candidate set in CANDIDATES."),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="Keep acts.h5, grads.h5 and cavs.h5 here."),
    features: Optional[str] = typer.Option(None, "--features", help="The candidates' features from vt-ace features "
                                                                   "(merged shards): cluster them, not embed again."),
    seed: int = opt.seed(help="Seed of k-means and of the CAVs."),
    batch_size: int = opt.batch_size(16, help="Clips per forward pass."),
    device: str = opt.device(),
    class_names: Optional[Path] = opt.class_names(),
    trust_checkpoint: bool = opt.trust_checkpoint(),
    quiet: bool = opt.quiet(),
    version: bool = opt.version(),
) -> None:
    """Cluster the candidates into concepts, write them, rank them by TCAV."""
    import torch

    from vtcav_common.ace.discover import DiscoverOptions, check_inputs, discover as run_discovery

    cli.set_quiet(quiet)
    options = DiscoverOptions(layer=layer, k=k, min_members=min_members, max_members=max_members, grid=grid,
                              seed=seed, classifier=classifier, correction=correction, alpha=alpha,
                              split=split or None, batch_size=batch_size)
    info = check_inputs(candidates, set_name, random, options)   # refuse bad input before loading the model
    torch.manual_seed(seed)
    loaded = _model_options(model, weights, class_names, trust_checkpoint, device)
    started = time.perf_counter()
    given = None
    if features is not None:
        from vtcav_common.ace.features_file import read_features

        given = read_features(features, loaded, layer, grid, candidates, set_name, info.n)
    result = run_discovery(loaded, candidates, random, videos, target, out, options, set_name, work_dir,
                           features=given)
    with cli.open_text_output(ranking) as handle:
        write_records(result.ranking, handle)
    flagged = sum(not r["significant"] for r in result.ranking)
    cli.info(f"vt-ace: {len(result.concepts)} concepts from {result.n_candidates} candidates -> {out}; "
             f"{flagged} not significant ({time.perf_counter() - started:.1f} s)")
    for row in result.ranking:
        side = "above" if row["direction"] == "+" else "below"
        verdict = f"significantly {side}" if row["significant"] else f"{side}, not significant"
        cli.info(f"  {row['rank']:>2}. {row['concept']}  TCAV {row['tcav_mean']:.3f} ± {row['tcav_std']:.3f} "
                 f"(random {row['null_mean']:.3f}): {verdict}; p {row['p']:.2g}, {row['correction']}-corrected p "
                 f"{row['p_corrected']:.2g}  {row['members']} members")


@app.command(epilog="Examples:\n\n"
                    "    vt-ace features cand.h5 --weights weights/classifier.pt --layer block3 -o feats.h5\n\n"
                    "    for k in 0 1; do vt-ace features cand.h5 --weights weights/classifier.pt --layer block3 "
                    "--shard $k/2 -o feats.$k.h5; done; vt-merge feats.h5 feats.0.h5 feats.1.h5")
def features(
    candidates: str = typer.Argument(..., help="Candidates from vt-ace supervoxels."),
    out: Path = opt.output(..., help="Embeddings HDF5 of the candidates' pooled features."),
    model: Optional[str] = opt.model(),
    weights: Optional[str] = opt.weights(),
    layer: str = typer.Option(..., "--layer", "-l", help="The layer discovery will cluster at."),
    grid: int = typer.Option(2, "--grid", min=0, help="Pool each channel to grid^3 cells (as discover's --grid)."),
    set_name: str = typer.Option(CANDIDATE_SET, "--set", help="The candidate set in CANDIDATES."),
    batch_size: int = opt.batch_size(16, help="Clips per forward pass (the same in every shard)."),
    device: str = opt.device(),
    class_names: Optional[Path] = opt.class_names(),
    trust_checkpoint: bool = opt.trust_checkpoint(),
    shard: Optional[str] = opt.shard(),
    quiet: bool = opt.quiet(),
    version: bool = opt.version(),
) -> None:
    """The feature step of discovery on its own (shardable): the candidates embedded at LAYER and pooled,
    for `vt-ace discover --features`."""
    from vtcav_common.ace.features_file import write_features

    cli.set_quiet(quiet)
    part = sharding.parse_shard(shard)
    loaded = _model_options(model, weights, class_names, trust_checkpoint, device)
    started = time.perf_counter()
    rows = write_features(loaded, candidates, set_name, layer, grid, batch_size, out, part)
    cli.info(f"vt-ace: features of {rows} candidates at {layer} (grid {grid}) -> {out} "
             f"({time.perf_counter() - started:.1f} s)")


@app.command(epilog="Example:\n\n"
                    "    vt-ace faithfulness concepts.h5 ranking.jsonl --videos world/labels.jsonl --split test \\\n"
                    "        --model vtcav_common.models.tiny:motion_c3d --weights weights/classifier.pt \\\n"
                    "        -o faith.jsonl --table faith.md")
def faithfulness(
    concepts: str = typer.Argument(..., help="Concept file from vt-ace discover."),
    ranking: str = typer.Argument(..., help="Ranking JSONL from vt-ace discover (most important first)."),
    videos: str = typer.Option(..., "--videos", help="Labels manifest with the class's test videos."),
    label: Optional[str] = opt.target(help="The class (default: the concepts' target).",
                                      hidden_aliases=("--label",)),
    split: Optional[str] = opt.split("test", help="Split of the videos ('' for all)."),
    output: str = opt.output("-", help="JSONL records ('-' for stdout)."),
    table: Optional[Path] = typer.Option(None, "--table", help="Also write the two tables as Markdown."),
    model: Optional[str] = opt.model(),
    weights: Optional[str] = opt.weights(),
    max_concepts: int = typer.Option(5, "--max-concepts", min=1, help="Columns k = 1..this."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Random draws of k concepts, averaged."),
    max_videos: Optional[int] = typer.Option(None, "--max-videos", min=1, help="At most this many videos."),
    seed: int = opt.seed(help="Seed of the random draws."),
    batch_size: int = opt.batch_size(16, help="Clips per forward pass."),
    device: str = opt.device(),
    class_names: Optional[Path] = opt.class_names(),
    trust_checkpoint: bool = opt.trust_checkpoint(),
    quiet: bool = opt.quiet(),
    version: bool = opt.version(),
) -> None:
    """Accuracy when the top / random / least concepts are added to grey or removed from the video."""
    from vtcav_common.ace.faithfulness import (FaithfulnessOptions, faithfulness as run_faithfulness,
                                               format_tables, markdown_tables, read_concept_model, read_ranking)

    cli.set_quiet(quiet)
    concept_model = read_concept_model(concepts)          # refuse bad input before loading the model
    read_ranking(ranking, concept_model.names)
    target = label or concept_model.target
    chosen = select_videos(videos, target, split or None, max_videos)
    loaded = _model_options(model, weights, class_names, trust_checkpoint, device)
    options = FaithfulnessOptions(max_concepts, repeats, seed, batch_size)
    records = run_faithfulness(loaded, concepts, ranking, chosen, options, target)
    with cli.open_text_output(output) as handle:
        write_records(records, handle)
    if table is not None:
        with cli.open_text_output(str(table)) as handle:
            handle.write(markdown_tables(records) + "\n")
    for line in format_tables(records):
        cli.info(line)


@app.command(epilog="Example:\n\n"
                    "    vt-ace sheet concepts.h5 --ranking ranking.jsonl --videos world/labels.jsonl -o sheets/")
def sheet(
    concepts: str = typer.Argument(..., help="A clip-set file (e.g. from vt-ace discover)."),
    out_dir: Path = opt.output(..., help="Folder for the PNGs (one per concept)."),
    ranking: Optional[str] = typer.Option(None, "--ranking", help="Ranking JSONL: rank and TCAV in the titles."),
    members: int = typer.Option(6, "--members", min=1, help="Member clips per sheet (rows)."),
    frames: int = opt.columns(4, help="Frames shown per clip (columns)."),
    scale: int = typer.Option(2, "--scale", min=1, max=8, help="Pixel magnification."),
    role: str = typer.Option("concept", "--role", help="Which sets: concept or random."),
    videos: Optional[str] = typer.Option(None, "--videos", help="Labels manifest or folder of the source videos: "
                                                                "time spans in seconds (else in frames)."),
    quiet: bool = opt.quiet(),
    version: bool = opt.version(),
) -> None:
    """A contact-sheet PNG per concept: member clips (rows) x frames (columns), each row captioned with
    its source video and the time span the member covers there."""
    cli.set_quiet(quiet)
    ranks = {record["concept"]: record for _, record in read_jsonl(ranking)} if ranking else None
    written = write_sheets(concepts, out_dir, ranks, members, frames, scale, role, videos)
    if not written:
        raise cli.VtcavError(f"{concepts}: no sets of role '{role}' to draw")
    cli.info(f"vt-ace: {len(written)} contact sheets in {out_dir}")


main = cli.entry(app, "vt-ace")
