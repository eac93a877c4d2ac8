"""Every alert rule has a label in both languages of the console (an alert of a rule
without one showed its key, e.g. ``rule.plot_tank``, to engineers)."""

from __future__ import annotations

import re
from pathlib import Path

from ingest.alerting.rules import RULES

I18N = Path(__file__).resolve().parents[2] / "ingest/api/console/static/js/i18n.js"


def _table(text: str, name: str) -> set[str]:
    body = re.search(rf"^const {name} = \{{\n(.*?)^\}};", text, re.S | re.M)
    assert body, f"table {name} not found in {I18N}"
    return set(re.findall(r'^\s*"([^"]+)":', body.group(1), re.M))


def test_every_rule_has_a_label_in_english_and_chinese():
    text = I18N.read_text(encoding="utf-8")
    for table in ("EN", "ZH"):
        missing = {f"rule.{name}" for name in RULES} - _table(text, table)
        assert not missing, f"{table} lacks {sorted(missing)}"
