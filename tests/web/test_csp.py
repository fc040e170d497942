"""The strict Content-Security-Policy (clinic_platform/settings/https.py: no inline script or
style, no eval) holds only if no page template carries inline code: this test fails on the
first template that does, so a new page cannot break the pages silently under the CSP.
templates/reports/ is rendered to PDF on the server (WeasyPrint), never served as a page."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
PAGE_TEMPLATES = sorted(p for p in (ROOT / "templates").rglob("*.html") if "reports" not in p.relative_to(ROOT).parts)
INLINE = {
    "style attribute": re.compile(r"\sstyle\s*=", re.IGNORECASE),
    "<style> element": re.compile(r"<style[\s>]", re.IGNORECASE),
    "inline <script>": re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.IGNORECASE),
    "event handler attribute": re.compile(r"\son[a-z]+\s*=\s*[\"']", re.IGNORECASE),
    "javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
    "htmx inline handler": re.compile(r"\shx-on", re.IGNORECASE),
}


def _without_comments(text: str) -> str:
    return re.sub(r"\{#.*?#\}|\{% comment %\}.*?\{% endcomment %\}|<!--.*?-->", "", text, flags=re.S)


@pytest.mark.parametrize("template", PAGE_TEMPLATES, ids=[str(p.relative_to(ROOT)) for p in PAGE_TEMPLATES])
def test_page_templates_have_no_inline_code(template: Path) -> None:
    text = _without_comments(template.read_text())
    found = {kind: pattern.findall(text) for kind, pattern in INLINE.items() if pattern.search(text)}
    assert not found, f"{template.relative_to(ROOT)}: {found} (use static/css/app.css or static/js/app.js)"


def test_policy_forbids_inline_code() -> None:
    directives = settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]
    for name in ("script-src", "style-src"):
        assert directives[name] == ["'self'"], (name, directives[name])
    assert directives["default-src"] == ["'none'"]


def test_pages_are_served_with_the_policy(client, django_user_model) -> None:
    response = client.get("/login/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "style-src 'self'" in policy
    assert "unsafe-inline" not in policy
