"""The README is read by newcomers on the repository alone: no path outside it, and every local link
and anchor it gives leads somewhere."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings: lower case, punctuation dropped, spaces as hyphens."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", markdown, re.M)}


def test_the_readme_names_no_file_outside_the_repository():
    assert "../" not in README


def test_every_link_of_the_readme_leads_somewhere():
    links = re.findall(r"\]\(([^)]+)\)", README)
    assert links
    for link in links:
        if link.startswith("#"):
            assert link[1:] in anchors(README), link
        elif not link.startswith(("http://", "https://")):
            assert (ROOT / link).is_file(), link


def test_the_first_screen_is_run_test_and_where_to_go_next():
    first_screen = README[:README.index("\n## ")]
    assert "**Run it**" in first_screen and "**Test it**" in first_screen
    assert not re.search(r"^\|", first_screen, re.M)       # no table before the commands' sections
    assert "docs/performance.md" in first_screen
