"""nep.util.live: the training stages' fresh output folders and DVCLive writing only their files."""

from __future__ import annotations

from nep.util import live


def test_clean_removes_each_folder_and_tolerates_missing_ones(tmp_path):
    (tmp_path / "a/b").mkdir(parents=True)
    (tmp_path / "a/b/f").write_text("x")
    live.clean(tmp_path / "a", tmp_path / "missing")
    assert not (tmp_path / "a").exists()


def test_dvclive_writes_the_curves_and_the_summary_only_when_asked(tmp_path):
    for summary in (True, False):
        out = tmp_path / f"summary_{summary}"
        logger = live.start(out)
        logger.log_metric("loss", 1.5)
        logger.next_step()
        logger.summary["loss"] = 1.5
        live.finish(logger, summary=summary)
        files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        assert files == (["metrics.json"] if summary else []) + ["plots/metrics/loss.tsv"]
    assert not (tmp_path / "dvc.yaml").exists()
