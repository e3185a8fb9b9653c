"""Literature research: papers on a query, from arXiv's query API when it is reachable, and from a local
folder of notes and papers (markdown, text; PDFs by file name) always. Each paper is a title, an abstract
(the first paragraph of a local file) and a link; nothing found is executed."""

from __future__ import annotations

import os
import re
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

ARXIV_API = "http://export.arxiv.org/api/query"
ATOM = "{http://www.w3.org/2005/Atom}"
TEXT_FILES = (".md", ".markdown", ".txt", ".rst")


def arxiv_endpoint() -> str:
    """arXiv's query API, or the one `TREX_RAY_ARXIV_API` names (a mirror)."""
    return os.environ.get("TREX_RAY_ARXIV_API") or ARXIV_API


def arxiv_search(query: str, max_results: int = 5, endpoint: str | None = None, timeout: float = 15.0) -> list[dict]:
    """Papers matching `query` on arXiv: [{title, abstract, link, authors, published}]. Raises on a network
    error, an HTTP error or a reply that is not an Atom feed (the caller says so and carries on)."""
    params = urllib.parse.urlencode({"search_query": f"all:{query}", "start": 0,
                                     "max_results": max(1, min(int(max_results), 20))})
    with urllib.request.urlopen(f"{endpoint or arxiv_endpoint()}?{params}", timeout=timeout) as r:
        body = r.read()
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise ValueError(f"arXiv's reply is not an Atom feed ({e})") from None
    if root.tag != f"{ATOM}feed":
        raise ValueError(f"arXiv's reply is not an Atom feed (root element {root.tag!r})")

    def text(el, tag: str) -> str:
        node = el.find(f"{ATOM}{tag}")
        return " ".join((node.text or "").split()) if node is not None else ""

    out = []
    for e in root.findall(f"{ATOM}entry"):
        link = next((a.get("href") for a in e.findall(f"{ATOM}link") if a.get("rel") == "alternate"), None)
        out.append({"title": text(e, "title"), "abstract": text(e, "summary")[:1500], "link": link or text(e, "id"),
                    "authors": [text(a, "name") for a in e.findall(f"{ATOM}author")][:8],
                    "published": text(e, "published")[:10], "source": "arxiv"})
    return [p for p in out if p["title"]]


def _title_and_abstract(path: Path, text: str) -> tuple[str, str]:
    if path.suffix.lower() not in TEXT_FILES:
        return path.stem.replace("_", " ").replace("-", " "), ""
    lines = text.splitlines()
    title = next((ln.lstrip("#").strip() for ln in lines if ln.strip()), path.stem)
    paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip() and not p.strip().startswith("#")]
    return title[:300], " ".join((paras[0] if paras else "").split())[:1500]


def local_papers(folder: str | None, query: str, limit: int = 5) -> list[dict]:
    """Files of a notes folder that match `query`'s words (title and text), most matches first."""
    if not folder or not os.path.isdir(folder):
        return []
    words = [w for w in re.findall(r"\w+", query.lower()) if len(w) > 2]
    scored = []
    for p in sorted(Path(folder).rglob("*")):
        if not p.is_file() or p.suffix.lower() not in (*TEXT_FILES, ".pdf"):
            continue
        text = p.read_text(errors="replace")[:20000] if p.suffix.lower() in TEXT_FILES else ""
        title, abstract = _title_and_abstract(p, text)
        body = text.lower()
        score = sum(3 * title.lower().count(w) + body.count(w) for w in words)
        if score or not words:
            scored.append((score, {"title": title, "abstract": abstract, "link": str(p), "source": "notes"}))
    scored.sort(key=lambda s: -s[0])
    return [p for _, p in scored[:limit]]
