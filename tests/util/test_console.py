"""nep.util.console: what a stage prints."""

from __future__ import annotations


def test_each_warning_once_and_on_its_own_line_while_a_bar_is_drawn(capsys):
    """A warning logged while a progress bar is drawn starts a line of its own (the bar is lifted
    and drawn again below it), and the same warning a second time is not shown again."""
    import logging
    import sys

    from tqdm import tqdm

    from nep.util.console import setup_logging

    setup_logging()
    try:
        log = logging.getLogger("nep.test")
        with tqdm(total=3, desc="work", file=sys.stderr, disable=False) as bar:
            bar.update(1)
            log.warning("the model is a smoke model")
            bar.update(1)
            log.warning("the model is a smoke model")
            log.info("a line")
            log.info("a line")  # info lines are not deduplicated
        err = capsys.readouterr().err
    finally:
        root = logging.getLogger()
        for h in list(root.handlers):
            if type(h).__name__ == "_BarSafeHandler":
                root.removeHandler(h)
        logging.captureWarnings(False)
    assert err.count("WARNING nep.test: the model is a smoke model") == 1
    assert err.count("INFO nep.test: a line") == 2
    before = err.split("WARNING nep.test:")[0]
    assert before.endswith(("\r", "\n"))  # at the start of a line, not after the bar's text
    assert "smoke model\n" in err
