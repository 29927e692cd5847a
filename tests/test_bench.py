"""`hashlib-ext bench` end to end, and the harness against the issue's reference figures."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hashlib_ext.cli import main
from hashlib_ext.evaluate.run import run_benchmark

PNGS = ["roc_by_family.png", "recall_by_family.png", "recall_heatmap_default.png",
        "distance_histograms.png", "throughput.png", "fpr_model.png"]


def _check_report(out: Path) -> dict:
    for name in ["report.md", "report.html", "results.json", *PNGS]:
        assert (out / name).is_file(), name
    for name in PNGS:
        with Image.open(out / name) as im:
            im.verify()
        with Image.open(out / name) as im:
            assert im.format == "PNG" and min(im.size) >= 200
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for name in PNGS:
        assert f"({name})" in md
    # the HTML stands alone: every plot embedded, byte for byte, none linked
    embedded = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(
        (out / name).read_bytes() for name in PNGS)
    assert ".png'" not in html
    assert "MODEL" in md and "results.json" in html
    # the verdict comes first
    assert md.index("## Verdict") < min(md.index(f"## {s}") for s in ("Thresholds", "Throughput"))
    return json.loads((out / "results.json").read_text())


def test_bench_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "rep"
    rc = main(["bench", "--limit", "6", "--transforms", "jpeg:q=30", "hflip", "rotate90:k=1",
               "-a", "phash,pdq", "-a", "pdq-dihedral", "--threshold-for", "phash=12",
               "-o", str(out), "-j", "1", "-q", "--collection-size", "1_000",
               "--collection-size", "50", "--match-budget", "0.1"])
    assert rc == 0
    cap = capsys.readouterr()
    assert str(out / "report.md") in cap.out
    assert cap.err == ""  # -q: no progress bar, no notes
    res = _check_report(out)
    v = res["verdict"]
    assert v["collection_sizes"] == [50, 1000] and v["budgets"]["match"] == 0.1
    assert [(r["use"], r["n"]) for r in v["recommendations"]] == [
        ("match", 50), ("match", 1000), ("dedup", 50), ("dedup", 1000)]
    if res["robust"] and "transforms" in res["robust"]:  # OpenCV installed: the robust parts
        md = (out / "report.md").read_text()
        assert "## Robust operating point" in md and "robust column (recall)" in md
    meta = res["meta"]
    assert meta["images_hashed"] == 6 and meta["dataset"]
    assert meta["transforms"] == ["jpeg:q=30", "hflip", "rotate90:k=1"]
    assert set(res["throughput"]) >= {"phash", "pdq", "pdq-dihedral"}
    algos = res["algorithms"]
    assert algos["phash"]["default_threshold"] == 12
    assert algos["pdq"]["bits"] == 256
    assert algos["phash"]["distinct_pairs"] == 15            # 6 * 5 / 2 unordered pairs
    assert algos["pdq-dihedral"]["distinct_pairs"] == 30     # ordered pairs, min over 8
    for a in ("phash", "pdq", "pdq-dihedral"):
        for tr in algos[a]["transforms"].values():
            assert sum(tr["same_hist"]) == 6
    # JPEG q30 keeps near-copies near; dihedral matching finds flips and quarter turns
    assert algos["phash"]["transforms"]["jpeg:q=30"]["recall_at_default"] >= 5 / 6
    assert algos["pdq"]["transforms"]["jpeg:q=30"]["recall_at_default"] == 1.0
    for spec in ("hflip", "rotate90:k=1"):
        assert algos["pdq-dihedral"]["transforms"][spec]["recall_at_default"] == 1.0
        assert algos["pdq-dihedral"]["transforms"][spec]["same_hist"][0] >= 4
    # at equal thresholds the min over 8 can only find more
    for spec in meta["transforms"]:
        assert (algos["pdq-dihedral"]["transforms"][spec]["recall_at_default"]
                >= algos["pdq"]["transforms"][spec]["recall_at_default"])


def test_bench_old_flag_spellings_still_work(tmp_path, capsys):
    out = tmp_path / "old"
    rc = main(["bench", "--limit", "3", "--transforms", "jpeg:q=30", "--algorithms", "dhash",
               "--out", str(out), "--workers", "1", "--no-progress", "--no-robust",
               "--no-plots"])
    assert rc == 0
    assert str(out / "report.md") in capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    assert res["meta"]["algorithms"] == ["dhash"]
    assert not list(out.glob("*.png"))


def test_bench_is_deterministic_across_workers():
    kw = dict(limit=4, transforms=["noise:sigma=10", "crop:side=0.2,edge=random"],
              algorithms=["dhash", "pdq"], progress=False, seed=3, throughput_images=1)
    a = run_benchmark(workers=1, **kw)
    b = run_benchmark(workers=2, **kw)
    for name in ("dhash", "pdq"):
        for spec in kw["transforms"]:
            ta = a["algorithms"][name]["transforms"][spec]
            tb = b["algorithms"][name]["transforms"][spec]
            assert ta["same_hist"] == tb["same_hist"]
        assert a["algorithms"][name]["distinct_hist"] == b["algorithms"][name]["distinct_hist"]


def test_bench_cli_errors(tmp_path, capsys):
    out = str(tmp_path / "x")
    assert main(["bench", "--transforms", "nosuch:q=1", "--out", out, "--no-progress"]) == 2
    assert "nosuch" in capsys.readouterr().err
    assert main(["bench", "--algorithms", "nohash", "--out", out, "--no-progress"]) == 2
    assert "nohash" in capsys.readouterr().err
    assert main(["bench", "--algorithms", "dhash-dihedral", "--out", out,
                 "--no-progress"]) == 2
    assert "dihedral" in capsys.readouterr().err
    for bad in (["--target-fpr", "2"], ["--threshold-for", "pdq"], ["--workers", "0"],
                ["--collection-size", "1"], ["--collection-size", "many"],
                ["--match-budget", "0"], ["--dedup-budget", "-1"]):
        with pytest.raises(SystemExit) as e:
            main(["bench", *bad])
        assert e.value.code == 2
    assert not Path(out).exists()


def test_run_benchmark_rejects_bad_options():
    with pytest.raises(TypeError, match="nosuch"):
        run_benchmark(nosuch=1)
    with pytest.raises(ValueError, match="target_fpr"):
        run_benchmark(target_fpr=0.0, progress=False)
    with pytest.raises(ValueError, match="at least 2"):
        run_benchmark(limit=1, transforms=["hflip"], algorithms=["dhash"], progress=False)


@pytest.mark.slow
def test_bench_default_run_on_bundled(tmp_path, monkeypatch):
    """The README's main job: `hashlib-ext bench` with no arguments."""
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--no-progress"]) == 0
    res = _check_report(tmp_path / "hashlib-ext-report")
    assert res["meta"]["images_hashed"] >= 24
    assert set(res["algorithms"]) == {"ahash", "dhash", "phash", "whash", "pdq", "pdq-dihedral"}
    # the robust column: every transform, found copies, no false match, its report section
    rob = res["robust"]
    assert set(rob["transforms"]) == set(res["meta"]["transforms"])
    assert rob["false_matches"] == 0 and all(s["false_matches"] == 0 for s in rob["stickers"])
    for spec in ("crop:side=0.2", "rotate:deg=5", "screenshot:scale=0.8", "hflip"):
        assert rob["transforms"][spec]["recall"] >= 0.9, spec
    report = (tmp_path / "hashlib-ext-report" / "report.md").read_text()
    assert "robust (default operating point)" in report and "## Robust operating point" in report


def test_bench_without_opencv_notes_the_missing_extra(tmp_path, monkeypatch):
    from hashlib_ext import features
    from hashlib_ext.errors import MissingDependencyError

    def missing():
        raise MissingDependencyError("robust matching needs OpenCV: pip install "
                                     "'hashlib-ext[robust]'")

    monkeypatch.setattr(features, "require_cv2", missing)
    res = run_benchmark(limit=3, transforms=["hflip"], algorithms=["pdq"], progress=False,
                        workers=1, throughput_images=1)
    assert "hashlib-ext[robust]" in res["robust"]["skipped"]
    with pytest.raises(MissingDependencyError):
        run_benchmark(limit=3, transforms=["hflip"], algorithms=["pdq"], progress=False,
                      workers=1, throughput_images=1, robust=True)
    assert run_benchmark(limit=3, transforms=["hflip"], algorithms=["pdq"], progress=False,
                         workers=1, throughput_images=1, robust=False)["robust"] is None


# The peer figures on the 256-image COCO sample at the threshold where the
# distinct-pair FPR <= 1e-3: (ahash, dhash, phash, whash, pdq, pdq-dihedral).
ALGOS = ["ahash", "dhash", "phash", "whash", "pdq", "pdq-dihedral"]
REFERENCE = {
    "jpeg:q=30": (1, 1, 1, 1, 1, 1),
    "resize:scale=0.25": (1, 1, 1, 1, 1, 1),
    "crop:center=0.9": (.64, .97, .97, .57, .90, .84),
    "crop:side=0.2": (.16, .03, .08, .16, .05, .02),
    "rotate:deg=5": (.57, .97, .90, .45, .93, .88),
    "rotate90:k=1": (0, 0, 0, 0, 0, 1),
    "hflip": (.09, .04, 0, .03, 0, 1),
    "banner:height=0.2": (.12, 1, .92, .17, 1, 1),
    "border:width=0.05": (.15, .81, .72, .14, .90, .84),
}
PDQ_AT_31 = {"crop:center=0.9": 0.0, "rotate:deg=5": 0.0, "border:width=0.05": 0.0,
             "banner:height=0.2": 0.11}
TOL = 0.15      # ordinary cells
TOL_EDGE = 0.03  # cells the peers measured as exactly 0 or 1


@pytest.mark.slow
def test_harness_reproduces_the_reference_figures(coco_sample, tmp_path):
    root = os.path.commonpath([str(p) for p in coco_sample])  # coco-sample/{train,val}2017
    res = run_benchmark(dataset=root, transforms=list(REFERENCE),
                        algorithms=ALGOS, target_fpr=1e-3, thresholds={"pdq": 31},
                        progress=False, throughput_images=8, robust=False)
    assert res["meta"]["images_hashed"] == len(coco_sample) == 256
    misses = []
    for spec, row in REFERENCE.items():
        for algo, ref in zip(ALGOS, row, strict=True):
            got = res["algorithms"][algo]["transforms"][spec]["recall_at_target"]
            tol = TOL_EDGE if ref in (0, 1) else TOL
            if abs(got - ref) > tol:
                misses.append(f"{spec} {algo}: {got:.2f} vs reference {ref} (tol {tol})")
    for spec, ref in PDQ_AT_31.items():
        got = res["algorithms"]["pdq"]["transforms"][spec]["recall_at_default"]
        if abs(got - ref) > 0.1:
            misses.append(f"pdq@31 {spec}: {got:.2f} vs reference {ref}")
    for algo in ALGOS:
        fpr = res["algorithms"][algo]["fpr_at_target_threshold"]
        assert fpr <= 1e-3
    assert not misses, "\n".join(misses)
    assert np.isfinite(res["algorithms"]["pdq"]["auc_designed"])
