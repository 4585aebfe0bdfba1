"""Harvesting activations at scale: `lookingglass harvest` and its Python API.

- `harvest(model, hooks, data, out, ...)`: run a model over a dataset, caching only the
  requested hooks, into shuffled safetensors shards with a manifest; resumable after a
  kill; data-parallel under `torchrun` with files identical to a single-process run.
- `read_shard(path)`, `read_manifest(out)`, `verify(out)`: read and check the result.

See docs/harvest.md for the file format.
"""

from lookingglass.harvest.manifest import HarvestError, read_manifest, verify
from lookingglass.harvest.run import harvest
from lookingglass.harvest.shards import read_shard

__all__ = ["HarvestError", "harvest", "read_manifest", "read_shard", "verify"]
