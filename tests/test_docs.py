"""The documentation keeps up with the code: every reported protocol has a format page, every
relative link resolves, every config key is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from detector.config import Config, Expected, LimitsModel, ThresholdsModel
from detector.protocols import registry

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# Markdown links and images: [text](target) / ![alt](target).
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
# deploy.md carries a section meant to be pasted into README.md, whose link is relative to the
# repository root; strict, so the mark goes once the file changes.


def reported_protocols() -> set[str]:
    return set(registry.protocol_specs())


def mentions(text: str, name: str) -> bool:
    """``name`` as a whole token: not 'erspan-2' inside 'erspan-21', nor 'ah' in 'ahead'."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def test_registry_is_not_empty() -> None:
    # Guards the next test: an empty registry would make it pass vacuously.
    assert {"tzsp", "vxlan", "pcli", "netflow-v9"} <= reported_protocols()


@pytest.mark.parametrize("name", sorted(reported_protocols()))
def test_every_protocol_has_a_format_page(name: str) -> None:
    page = DOCS / "formats" / registry.protocol_specs()[name].doc
    assert page.is_file(), f"protocol {name!r}: its page {page.name} is not in docs/formats"
    assert mentions(page.read_text(), name), f"docs/formats/{page.name} does not mention {name!r}"


def test_mentions_is_token_exact() -> None:
    assert mentions("reported as `erspan-2` here", "erspan-2")
    assert not mentions("erspan-21", "erspan-2")
    assert not mentions("ahead of time", "ah")
    assert not mentions("gre-teb", "gre")


def relative_links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text())
    out = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http:, https:, mailto: ... and links within the page
        out.append(target.split("#", 1)[0])
    return out


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def test_links_are_found() -> None:
    # The link pattern must see the links it is meant to check.
    assert "docs/index.md" in relative_links(ROOT / "README.md")
    assert "formats/tzsp.md" in relative_links(DOCS / "index.md")


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=str(p.relative_to(ROOT))) for p in markdown_files()],
)
def test_relative_links_resolve(path: Path) -> None:
    broken = [t for t in relative_links(path) if not (path.parent / t).exists()]
    assert not broken, f"{path.relative_to(ROOT)}: broken links {broken}"


def config_keys(model: type[BaseModel]) -> list[str]:
    # Fields excluded from the model's data (the file name it was read from) are not keys.
    return [name for name, f in model.model_fields.items() if not f.exclude]


@pytest.mark.parametrize(
    "model", [Config, Expected, ThresholdsModel, LimitsModel], ids=lambda m: m.__name__
)
def test_every_config_key_is_documented(model: type[BaseModel]) -> None:
    text = (DOCS / "config.md").read_text()
    keys = config_keys(model)
    assert keys
    missing = [k for k in keys if f"`{k}`" not in text]
    assert not missing, f"docs/config.md does not document {missing}"
