"""The same store gives the same PDF, byte for byte, whenever it is built: `make study` on a complete store
leaves the checkout unchanged (pdfTeX's dates come from SOURCE_DATE_EPOCH, fixed by report.py)."""
import re
import shutil
import time

import pytest

from dnnls_tf.publish import report
from test_report import make_root, needs_latex


@pytest.mark.slow
@needs_latex
def test_the_report_is_byte_for_byte_the_same_when_built_again_later(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    study, _ = make_root(tmp_path)
    first = report.build_report(study).read_bytes()
    time.sleep(1.1)  # pdfTeX's clock dates have a resolution of one second
    shutil.rmtree(tmp_path / "report")
    again = report.build_report(study).read_bytes()
    assert again == first
    assert re.findall(rb"/CreationDate \(D:(\d{8})", first) == [b"20261125"]  # report.SOURCE_DATE_EPOCH's day
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1800000000")  # a date the environment sets wins
    assert re.findall(rb"/CreationDate \(D:(\d{8})", report.build_report(study).read_bytes()) == [b"20270115"]
