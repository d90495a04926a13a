"""Fill a node's feature cache before a trial reads it, or say which node lacks which audio.

Feature caches are per node (``data.cache_dir`` on each machine): the driver fills its own, and
every trial computes whatever its node lacks from the audio paths in the manifest. On a cluster
without a shared disk the corpus must therefore sit at the same path on every node; when it does
not, the trial fails here with the node and the first missing path, instead of a
"features not found" error further down.
"""

from __future__ import annotations

import os
import socket

import pandas as pd

from trainers.features import extract_features

__all__ = ["CorpusNotOnNodeError", "fill_node_cache"]


class CorpusNotOnNodeError(FileNotFoundError):
    """Audio files of the manifest cannot be read on this node (the corpus is elsewhere here)."""


def fill_node_cache(
    rows: pd.DataFrame, *, preset: str, cache_dir: str | os.PathLike[str] | None, node: str | None = None
) -> None:
    """Compute the features of ``rows`` that this node's cache lacks; raise ``CorpusNotOnNodeError``
    naming the node (``node``, else this host's name) and the first unreadable path."""
    summary = extract_features(rows, preset=preset, cache_dir=cache_dir)
    if not summary.failed:
        return
    first = summary.failed[0]
    where = node or socket.gethostname()
    raise CorpusNotOnNodeError(
        f"node {where} cannot read {len(summary.failed)} of {len(rows)} audio file(s) of the manifest "
        f"(first: {first.path}: {first.reason}). Feature caches are per node and filled from the manifest's "
        "paths, so the corpus must be at the same path on every node (copy or mount it there; see "
        "docs/cluster.md, 'Clusters without a shared disk')."
    )
