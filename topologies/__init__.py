"""Topology files and the model read from them: the first stage of the lab's one-way flow.

model (sites, links, hosts) <- loader (a YAML file, validated strictly); mininet_topo builds
Mininet's Topo from a model, hybrid offers it to `mn --custom`.
"""

from pathlib import Path

DEFAULT_TOPOLOGY = Path(__file__).with_name("hybrid-cloud.yaml")
