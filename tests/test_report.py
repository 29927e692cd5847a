"""The benchmark report: verdict first, labelled rates, per-family AUC, a page that stands
alone, and plots that are optional (matplotlib is the 'report' extra)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys

import pytest

from hashlib_ext.errors import MissingDependencyError
from hashlib_ext.evaluate import summary
from hashlib_ext.evaluate.report import markdown, tables, write_report
from hashlib_ext.evaluate.run import run_benchmark

SPECS = ["jpeg:q=30", "hflip", "crop:side=0.2"]


@pytest.fixture(scope="module")
def res() -> dict:
    return run_benchmark(limit=6, transforms=SPECS, algorithms=["phash", "pdq-dihedral"],
                         robust=False, workers=1, progress=False, throughput_images=1)


def test_report_modules_import_without_matplotlib():
    code = ("import sys\n"
            "import hashlib_ext.evaluate.report, hashlib_ext.evaluate.run\n"
            "import hashlib_ext.cli.bench_cmd\n"
            "assert 'matplotlib' not in sys.modules, 'imported matplotlib'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_matplotlib_the_report_says_so(res, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails, find_spec is None
    written = write_report(res, tmp_path)
    assert set(written) == {"results", "markdown", "html"}
    assert not list(tmp_path.glob("*.png"))
    md = (tmp_path / "report.md").read_text()
    assert "Plots not drawn" in md and "pip install 'hashlib-ext[report]'" in md
    assert "Plots not drawn" in (tmp_path / "report.html").read_text()
    with pytest.raises(MissingDependencyError, match=r"hashlib-ext\[report\]"):
        write_report(res, tmp_path / "strict", plots=True)
    write_report(res, tmp_path / "none", plots=False)  # asked for none: no note
    assert "Plots not drawn" not in (tmp_path / "none" / "report.md").read_text()


def test_html_stands_alone(res, tmp_path):
    write_report(res, tmp_path)
    page = (tmp_path / "report.html").read_text()
    sources = re.findall(r"<img src='([^']*)'", page)
    assert len(sources) == len(list(tmp_path.glob("*.png"))) >= 5
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")
    assert "href=" not in page  # nothing to follow once the page is copied alone
    assert "**" not in page and "<strong>" in page  # Markdown marks converted, not leaked


def test_verdict_first_and_every_rate_labelled(res):
    md = markdown(res, {})
    assert md.index("## Verdict") < md.index("## Every candidate") < md.index("## Thresholds")
    verdict_part = md[md.index("## Verdict"):md.index("## Every candidate")]
    lines = [ln for ln in verdict_part.splitlines() if ln.startswith("- ")]
    assert len(lines) == 4  # match and dedup, at 6 images and at 1M
    for ln in lines:
        # 15 distinct pairs measure nothing below 0.2: every verdict rate is a model's
        assert "*modelled*" in ln and "beta-binomial" in ln
        assert "FPR < " in ln  # what the measured pairs do say
    assert "3/FPR" in verdict_part and "--collection-size" in verdict_part
    head, rows = tables(res)["verdict"]
    col = head.index("per-pair FPR")
    for row in rows:
        cell = row[col]
        assert ("*modelled*" in cell or "*measured*" in cell or cell.startswith("no threshold"))


def test_thresholds_never_finer_than_the_pairs(res):
    head, rows = tables(res)["thresholds"]
    col = next(i for i, h in enumerate(head) if h.startswith("threshold @ FPR<=0.001"))
    for row in rows:
        pairs = int(row[head.index("distinct pairs")].replace(",", ""))
        assert row[col].startswith(f"not measurable with {pairs:,} pairs (FPR < ")
    md = markdown(res, {})
    section = md[md.index("## Recall at the measured"):md.index("## Recall at the modelled")]
    assert "| `jpeg:q=30`" not in section and "not measurable" in section


def test_auc_per_family_and_design_marks(res):
    head, rows = tables(res)["families"]
    by_family = {r[0]: r for r in rows}
    assert set(by_family) >= {"recompress", "mirror/turn", "crop"}
    ph, dih = head.index("phash AUC"), head.index("pdq-dihedral AUC")
    assert by_family["recompress"][ph].endswith("✓") and by_family["recompress"][dih].endswith("✓")
    assert not by_family["mirror/turn"][ph].endswith("✓")
    assert by_family["mirror/turn"][dih].endswith("✓")
    assert not by_family["crop"][dih].endswith("✓")
    assert "AUC (all transforms)" not in markdown(res, {})
    fams = res["algorithms"]["phash"]["families"]
    assert fams["mirror/turn"]["transforms"] == ["hflip"]
    assert res["algorithms"]["phash"]["auc_designed"] == fams["recompress"]["auc"]


def test_results_json_holds_the_verdict(res, tmp_path):
    write_report(res, tmp_path, plots=False)
    v = json.loads((tmp_path / "results.json").read_text())["verdict"]
    assert v["collection_sizes"] == [6, 1_000_000]
    rec = v["recommendations"][0]
    assert rec["use"] == "match" and rec["choice"] in ("phash", "pdq-dihedral")
    chosen = rec["candidates"][rec["choice"]]
    assert chosen["basis"] == "modelled" and chosen["expected_false"] <= rec["budget"]


def test_summary_helpers():
    assert summary.command("dedup", "pdq", 95) == "hashlib-ext dedup DIR -a pdq -t 95"
    assert summary.command("dedup", "pdq-dihedral", 87) == (
        "hashlib-ext dedup DIR -a pdq -t 87 --dihedral")
    assert summary.command("match", "pdq-dihedral", 89) == (
        "hashlib-ext match INDEX QUERIES -t 89 --dihedral")
    assert summary.command("match", "phash", 15) == "hashlib-ext match INDEX QUERIES -t 15"
    assert summary.measured_rate(0, 32640, 9.2e-5) == "0 of 32,640 pairs, FPR < 9.2e-05 at 95%"
    assert summary.measured_rate(3, 32640, 1e-4) == "3 of 32,640 pairs = 9.2e-05"


def test_copies_in_the_dataset_are_called_out(res):
    import copy

    from hashlib_ext.evaluate import verdict

    assert "Check the dataset" not in markdown(res, {})
    dup = copy.deepcopy(res)
    for a in dup["algorithms"].values():
        a["distinct_hist"][0] += 2
    dup["verdict"] = verdict.build(dup)
    assert "**Check the dataset:** 2 pairs" in markdown(dup, {})


def test_few_pairs_are_called_out(res):
    md = markdown(res, {})  # 6 images: 15 pairs
    assert "**Few pairs:** 15 distinct pairs" in md
