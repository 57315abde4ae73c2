"""Convert the source projects' own published checkpoints into cifar-timm models (`cifar-timm convert`).

`readers` reads a file without running its code, `sources` says how each project's names, layouts and
preprocessing map onto ours, `converter` checks and writes the result, `report` scores the published checkpoints
for docs/peer_checkpoints.md.
"""
from .converter import convert_checkpoint, get_source, published_checkpoint, write_converted
from .readers import ConversionError
from .sources import PUBLISHED_CHECKPOINTS, SOURCES, PeerSource, PublishedCheckpoint

__all__ = ['ConversionError', 'PUBLISHED_CHECKPOINTS', 'PeerSource', 'PublishedCheckpoint', 'SOURCES',
           'convert_checkpoint', 'get_source', 'published_checkpoint', 'write_converted']
