"""vt-ace: 3D-ACE concept discovery from supervoxels, TCAV ranking, faithfulness, contact sheets."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vtcav_common.ace import steps
from vtcav_common.ace.candidates import CANDIDATE_SET
from vtcav_common.ace.supervoxels import DEFAULT_FILL
from vtcav_common.cli import frame
from vtcav_common.cli import options as opt
from vtcav_common.cli.bundles import BUNDLE, MaskDraws, ModelOptions, bundled, max_videos as max_videos_option
from vtcav_common.core import messages

# Each command parses its options and calls its step in vtcav_common.ace.steps, which loads the
# model-side modules (torch, scikit-learn) only when it needs them.

app = frame.make_app(
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


@app.command(epilog="Examples:\n\n"
                    "    vt-ace supervoxels world/labels.jsonl --label right --split train -o cand.h5\n\n"
                    "    vt-ace supervoxels clips/ --resolutions 10,30 --compactness 5 -o cand.h5")
def supervoxels(
    videos: str = typer.Argument(..., help="A labels manifest (labels.jsonl) or a folder of videos."),
    out: Path = opt.output(..., help="Clip-set HDF5 of candidate supervoxel clips."),
    labels: List[str] = opt.labels(help="Only videos with this label (the class to explain; repeatable)."),
    split: Optional[str] = opt.split(),
    max_videos: Optional[int] = max_videos_option(),
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
    messages.set_quiet(quiet)
    steps.supervoxels(videos, out, labels, split, max_videos, resolutions, compactness, sigma, min_fraction, max_iou,
                      fill, frames, size, name, shard)


@app.command(epilog="Example:\n\n"
                    "    vt-ace discover cand.h5 --random random.h5 --videos world/labels.jsonl --target right \\\n"
                    "        --model vtcav_common.models.tiny:motion_c3d --weights weights/classifier.pt \\\n"
                    "        --layer block3 --k 8 -o concepts.h5 --ranking ranking.jsonl\n\n"
                    "Then, with the tools:\n\n"
                    "    vt-embed concepts.h5 --weights weights/classifier.pt --layers block3 -o acts.h5 && "
                    "vt-cav acts.h5 -o cavs.h5")
@bundled
def discover(
    candidates: str = typer.Argument(..., help="Candidates from vt-ace supervoxels."),
    random: str = typer.Option(..., "--random", help="Random sets (vt-concepts random) with the same --frames/--size."),
    videos: str = typer.Option(..., "--videos", help="Labels manifest: the class's videos give the TCAV gradients."),
    target: str = opt.target(..., help="The class whose concepts are discovered."),
    out: Path = opt.output(..., help="Clip-set HDF5 of the concepts (ace_00, ...) and random sets."),
    ranking: str = typer.Option("-", "--ranking", help="Ranking JSONL ('-' for stdout)."),
    model: ModelOptions = BUNDLE,
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
    quiet: bool = opt.quiet(),
    version: bool = opt.version(),
) -> None:
    """Cluster the candidates into concepts, write them, rank them by TCAV."""
    messages.set_quiet(quiet)
    steps.discover(model.load, candidates, random, videos, target, out, ranking, layer=layer, k=k,
                   min_members=min_members, max_members=max_members, grid=grid, split=split, classifier=classifier,
                   correction=correction, alpha=alpha, set_name=set_name, work_dir=work_dir, features=features,
                   seed=seed, batch_size=batch_size)


@app.command(epilog="Examples:\n\n"
                    "    vt-ace features cand.h5 --weights weights/classifier.pt --layer block3 -o feats.h5\n\n"
                    "    for k in 0 1; do vt-ace features cand.h5 --weights weights/classifier.pt --layer block3 "
                    "--shard $k/2 -o feats.$k.h5; done; vt-merge feats.h5 feats.0.h5 feats.1.h5")
@bundled
def features(
    candidates: str = typer.Argument(..., help="Candidates from vt-ace supervoxels."),
    out: Path = opt.output(..., help="Embeddings HDF5 of the candidates' pooled features."),
    model: ModelOptions = BUNDLE,
    layer: str = typer.Option(..., "--layer", "-l", help="The layer discovery will cluster at."),
    grid: int = typer.Option(2, "--grid", min=0, help="Pool each channel to grid^3 cells (as discover's --grid)."),
    set_name: str = typer.Option(CANDIDATE_SET, "--set", help="The candidate set in CANDIDATES."),
    batch_size: int = opt.batch_size(16, help="Clips per forward pass (the same in every shard)."),
    shard: Optional[str] = opt.shard(),
    quiet: bool = opt.quiet(),
    version: bool = opt.version(),
) -> None:
    """The feature step of discovery on its own (shardable): the candidates embedded at LAYER and pooled,
    for `vt-ace discover --features`."""
    messages.set_quiet(quiet)
    steps.features(model.load, candidates, out, layer, grid, set_name, batch_size, shard)


@app.command(epilog="Example:\n\n"
                    "    vt-ace faithfulness concepts.h5 ranking.jsonl --videos world/labels.jsonl --split test \\\n"
                    "        --model vtcav_common.models.tiny:motion_c3d --weights weights/classifier.pt \\\n"
                    "        -o faith.jsonl --table faith.md")
@bundled
def faithfulness(
    concepts: str = typer.Argument(..., help="Concept file from vt-ace discover."),
    ranking: str = typer.Argument(..., help="Ranking JSONL from vt-ace discover (most important first)."),
    videos: str = typer.Option(..., "--videos", help="Labels manifest with the class's test videos."),
    label: Optional[str] = opt.target(help="The class (default: the concepts' target).",
                                      hidden_aliases=("--label",)),
    split: Optional[str] = opt.split("test", help="Split of the videos ('' for all)."),
    output: str = opt.output("-", help="JSONL records ('-' for stdout)."),
    table: Optional[Path] = typer.Option(None, "--table", help="Also write the two tables as Markdown."),
    model: ModelOptions = BUNDLE,
    max_concepts: int = typer.Option(5, "--max-concepts", min=1, help="Columns k = 1..this."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Random draws of k concepts, averaged."),
    max_videos: Optional[int] = max_videos_option(),
    seed: int = opt.seed(help="Seed of the random draws."),
    batch_size: int = opt.batch_size(16, help="Clips per forward pass."),
    quiet: bool = opt.quiet(),
    version: bool = opt.version(),
) -> None:
    """Accuracy when the top / random / least concepts are added to grey or removed from the video."""
    messages.set_quiet(quiet)
    steps.faithfulness(model.load, concepts, ranking, videos, label, split, output, table, max_concepts, repeats,
                       max_videos, seed, batch_size)


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
    messages.set_quiet(quiet)
    steps.sheets(concepts, out_dir, ranking, members, frames, scale, role, videos)


VTCD_MODEL = "--model vtcav_common.models.tiny:motion_c3d --weights weights/classifier.pt"


@app.command(epilog="Examples:\n\n"
                    f"    vt-ace tubelets world/labels.jsonl --label right --split train {VTCD_MODEL} "
                    "--layers block1,block2,block3 -o tub.h5\n\n"
                    f"    for k in 0 1; do vt-ace tubelets world/labels.jsonl --label right --split train {VTCD_MODEL} "
                    "--layers block2,block3 --shard $k/2 -o tub.$k.h5; done; vt-merge tub.h5 tub.0.h5 tub.1.h5")
@bundled
def tubelets(
    videos: str = typer.Argument(..., help="A labels manifest (labels.jsonl) or a folder of videos."),
    out: Path = opt.output(..., help="Tubelets file (a supervoxel clip set with VTCD features per layer)."),
    labels: List[str] = opt.labels(help="Only videos with this label (the class to explain)."),
    split: Optional[str] = opt.split(),
    max_videos: Optional[int] = max_videos_option(),
    model: ModelOptions = BUNDLE,
    layers: str = typer.Option(..., "--layers", "-l", help="Comma-separated layers (each a channels x T x H x W "
                                                          "feature map)."),
    resolutions: str = typer.Option("30", "--resolutions", help="SLIC segment counts (one: the tubelets "
                                                                "partition each video)."),
    compactness: float = typer.Option(10.0, "--compactness", help="SLIC compactness."),
    shard: Optional[str] = opt.shard(),
    quiet: bool = opt.quiet(),
    version: bool = opt.version(),
) -> None:
    """VTCD step 1: cut each video into tubelets and pool each tubelet's features at every layer."""
    messages.set_quiet(quiet)
    steps.tubelets(model.load, videos, out, labels, split, max_videos, layers, resolutions, compactness, shard)


@app.command(epilog="Examples (one command, from videos to ranked concepts):\n\n"
                    f"    vt-ace vtcd world/labels.jsonl --target right --split train {VTCD_MODEL} "
                    "--layers block1,block2,block3 -o concepts.h5 --ranking ranking.jsonl --table vtcd.md "
                    "--faithfulness faith.jsonl --sheets sheets/ --gt world/gt.jsonl --work-dir work\n\n"
                    "The same in steps, the per-video ones in shards joined by vt-merge (vt-ace tubelets --shard "
                    "makes work/tubelets.h5 the same way):\n\n"
                    f"    vt-ace vtcd work/tubelets.h5 --videos world/labels.jsonl --target right {VTCD_MODEL} "
                    "-o concepts2.h5 --concepts-only\n\n"
                    f"    for k in 0 1; do vt-ace masks concepts2.h5 work/tubelets.h5 --videos world/labels.jsonl "
                    f"{VTCD_MODEL} --shard $k/2 -o stats.$k.h5; done\n\n"
                    f"    vt-merge stats.h5 stats.0.h5 stats.1.h5 && vt-ace vtcd work/tubelets.h5 --videos "
                    f"world/labels.jsonl --target right {VTCD_MODEL} --concepts concepts2.h5 --stats stats.h5 "
                    "--ranking ranking2.jsonl")
@bundled
def vtcd(
    source: str = typer.Argument(..., help="A labels manifest (the class's videos are cut into tubelets) or a "
                                           "tubelets file from vt-ace tubelets."),
    target: str = opt.target(..., help="The class whose concepts are discovered and whose response is masked."),
    out: Optional[Path] = opt.output(None, help="Concept file to write (a clip set: vtcd_<layer>_NN)."),
    ranking: str = typer.Option("-", "--ranking", help="Ranking JSONL ('-' for stdout)."),
    table: Optional[Path] = typer.Option(None, "--table", help="Also write the discovery table (and the "
                                                              "faithfulness tables) as Markdown."),
    videos: Optional[str] = typer.Option(None, "--videos", help="The labels manifest of the videos (needed with a "
                                                                "tubelets file)."),
    split: Optional[str] = opt.split("train", help="Split of the class's videos ('' for all)."),
    max_videos: Optional[int] = max_videos_option(),
    model: ModelOptions = BUNDLE,
    layers: str = typer.Option("", "--layers", "-l", help="Comma-separated layers (default: all of the tubelets "
                                                          "file's)."),
    resolutions: str = typer.Option("30", "--resolutions", help="SLIC segment counts of the tubelets."),
    compactness: float = typer.Option(10.0, "--compactness", help="SLIC compactness."),
    k_min: int = typer.Option(4, "--k-min", help="Fewest clusters a layer (k = the silhouette-best in k-min..k-max)."),
    k_max: int = typer.Option(12, "--k-max", help="Most clusters a layer."),
    max_members: int = typer.Option(40, "--max-members", min=1, help="Member clips kept a concept (nearest the "
                                                                     "centre)."),
    draws: MaskDraws = BUNDLE,
    bootstrap: int = typer.Option(200, "--bootstrap", help="Bootstrap replicates over videos."),
    alpha: float = typer.Option(0.05, "--alpha", help="Level after Holm's correction over the concepts."),
    response: str = typer.Option("logprob", "--response", help="What masking moves: logprob (the target's "
                                                               "log-probability) or logit."),
    cells: str = typer.Option("owner", "--cells", help="owner: a grid cell is masked wholly with the tubelet "
                                                       "covering most of it; share: in proportion."),
    concepts: Optional[str] = typer.Option(None, "--concepts", help="A concept file written before: skip "
                                                                    "clustering."),
    stats: Optional[str] = typer.Option(None, "--stats", help="Masking statistics from vt-ace masks (merged): "
                                                              "skip masking."),
    concepts_only: bool = typer.Option(False, "--concepts-only", help="Stop after writing the concept file."),
    faith: Optional[str] = typer.Option(None, "--faithfulness", help="Add/remove faithfulness records (JSONL) per "
                                                                    "layer."),
    max_concepts: int = typer.Option(3, "--max-concepts", min=1, help="Faithfulness columns k = 1..this."),
    sheets: Optional[Path] = typer.Option(None, "--sheets", help="A contact-sheet PNG per concept in this folder."),
    gt: Optional[str] = typer.Option(None, "--gt", help="True boxes (vt-synth's gt.jsonl): each concept's "
                                                        "overlap with each object class."),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="Keep tubelets.h5 and stats.h5 here."),
    seed: int = opt.seed(help="Seed of k-means, the masks, the null copies and the bootstrap."),
    batch_size: int = opt.batch_size(16, help="Masked copies of a video per forward pass."),
    quiet: bool = opt.quiet(),
    version: bool = opt.version(),
) -> None:
    """VTCD with a null: tubelets in the model's features, per-layer concepts, ranked by random masking on the
    real videos against randomly placed copies of the same size."""
    messages.set_quiet(quiet)
    steps.vtcd(model.load, source, out, ranking=ranking, table=table, videos=videos, concepts=concepts, stats=stats,
               concepts_only=concepts_only, faith=faith, sheets=sheets, work_dir=work_dir, target=target,
               layers=layers, split=split, max_videos=max_videos, resolutions=resolutions, compactness=compactness,
               k_min=k_min, k_max=k_max, max_members=max_members, masks=draws.masks, rate=draws.rate,
               null_copies=draws.null_copies, bootstrap=bootstrap, alpha=alpha, response=response, cells=cells,
               seed=seed, batch_size=batch_size, max_concepts=max_concepts, gt=gt)


@app.command(epilog="Example (after vt-ace vtcd ... --work-dir work -o concepts.h5):\n\n"
                    f"    vt-ace masks concepts.h5 work/tubelets.h5 --videos world/labels.jsonl --target right "
                    f"{VTCD_MODEL} --shard 0/2 -o stats.0.h5")
@bundled
def masks(
    concepts: str = typer.Argument(..., help="Concept file from vt-ace vtcd."),
    tubelets_file: str = typer.Argument(..., help="Tubelets file of the videos to mask (vt-ace tubelets)."),
    out: Path = opt.output(..., help="Masking statistics (HDF5, one row a video)."),
    videos: str = typer.Option(..., "--videos", help="The labels manifest of the videos."),
    target: Optional[str] = opt.target(help="The class (default: the concepts')."),
    model: ModelOptions = BUNDLE,
    draws: MaskDraws = BUNDLE,
    response: str = typer.Option("logprob", "--response", help="logprob or logit."),
    cells: str = typer.Option("owner", "--cells", help="owner or share (see vt-ace vtcd)."),
    seed: int = opt.seed(help="Seed of the masks and the null copies (as vt-ace vtcd's)."),
    batch_size: int = opt.batch_size(16, help="Masked copies of a video per forward pass."),
    shard: Optional[str] = opt.shard(),
    quiet: bool = opt.quiet(),
    version: bool = opt.version(),
) -> None:
    """VTCD step 3 on its own (shardable): random masks over the concepts and their null copies, the
    regression statistics of each video, for vt-ace vtcd --stats."""
    messages.set_quiet(quiet)
    steps.masks(model.load, concepts, tubelets_file, out, videos, target, draws.masks, draws.rate, draws.null_copies,
                response, cells, seed, batch_size, shard)


main = frame.entry(app, "vt-ace")
