"""The knowledge base: articles as files, search, suggestions and drafts (issue 14).

``model`` (plain values) <- ``loader`` (files -> articles, problems as
file:line) <- ``search`` (BM25F index) <- ``suggest`` (what a requester
sees) ; ``mailflow`` ties it to tickets (acknowledgement, ``#kb`` commands,
``solved`` replies) and ``drafts`` writes new article files.
"""

from mailgate.kb.model import Article, KbError, KnowledgeBase, Problem

__all__ = ["Article", "KbError", "KnowledgeBase", "Problem"]
