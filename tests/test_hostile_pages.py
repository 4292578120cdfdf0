"""Pages built from a hostile pack (red team 2026-12, F8): only http(s) addresses become links (a
`javascript:` source URL is shown as text, not dropped), and every page carries a
Content-Security-Policy that lets no script run but the index's own filter."""

import re
import shutil
from collections import Counter

import pytest
import yaml

import jakcds
from conftest import RULES, WENZEL
from jakcds.knowledge.pack import load_pack, write_manifest
from jakcds.review.explain import explain_each
from jakcds.views.html import decision_page, rule_pages

HOSTILE = ["javascript:alert(document.domain)", "JavaScript:alert(1)", " javascript:alert(1)", "data:text/html,<script>alert(1)</script>",
           "file:///etc/passwd", "vbscript:msgbox(1)"]


@pytest.fixture(params=HOSTILE)
def hostile(tmp_path, request):
    """An evaluator of the shipped pack with seed-002's url replaced by a hostile one."""
    shutil.copytree(RULES, tmp_path / "rules")
    sources = yaml.safe_load((tmp_path / "rules" / "sources.yaml").read_text())
    sources["seed-002"]["url"] = request.param
    sources["seed-000"]["url"] = "https://example.org/seed-000"
    (tmp_path / "rules" / "sources.yaml").write_text(yaml.safe_dump(sources, sort_keys=False))
    write_manifest(tmp_path / "rules")
    return jakcds.Evaluator(load_pack(tmp_path / "rules"))


def links(page):
    return re.findall(r'href="([^"]*)"', page)


def check(pages):
    shown = False
    for name, page in pages.items():
        assert all(not re.match(r"\s*[a-z]+:", link, re.I) or link.startswith("https://") for link in links(page)), name
        policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
        assert policy and "default-src 'none'" in policy.group(1) and "unsafe-inline" not in policy.group(1).split("script-src")[1], name
        shown |= "not a web address: not a link" in page
    assert shown  # the address is listed as text, not dropped


def test_rule_pages_link_only_web_addresses(hostile):
    ev = hostile
    pages = rule_pages(ev, {}, {})
    check(pages)
    assert 'href="https://example.org/seed-000"' in "".join(pages.values())


def test_a_decision_page_links_only_web_addresses(hostile):
    ev = hostile
    result = ev.evaluate(WENZEL)
    check({"report.html": decision_page(ev, result, explain_each(ev, WENZEL))})


def test_the_shipped_pages_keep_their_links(evaluator):
    pages = rule_pages(evaluator, {}, {})
    assert Counter(link for page in pages.values() for link in links(page))["https://doi.org/10.36849/JDD.7500"] > 0
