"""`mn --custom topologies/hybrid.py --topo hybrid[,FILE]`: the lab's topology under plain Mininet.

Plain Mininet has no routing for this looped topology: attach the lab's controller
(`lab controller`, then `--controller remote,port=6653`) or use spanning tree
(`--controller none --switch ovs,failMode=standalone,stp=True`); where the kernel has no
openvswitch module, add `datapath=user` to --switch.
"""

import inspect
import sys
from pathlib import Path

# `mn --custom` execs this file without __file__; find the project root from the code object.
_ROOT = Path(inspect.currentframe().f_code.co_filename).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from topologies import DEFAULT_TOPOLOGY  # noqa: E402
from topologies.mininet_topo import HybridTopo  # noqa: E402


def hybrid(topology_file: str = str(DEFAULT_TOPOLOGY)) -> HybridTopo:
    return HybridTopo(topology=topology_file)


topos = {"hybrid": hybrid}
