"""A two-node Ray cluster on this machine (ray.cluster_utils.Cluster, Ray's own test utility),
for tests/test_cluster.py: prints the head's address, runs until the file argv[1] exists."""

import os
import sys
import time

from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
cluster.add_node(num_cpus=2)  # 3 CPUs in all, not a local count: a run sized by the local machine shows
cluster.wait_for_nodes()
print(cluster.address, flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.2)
cluster.shutdown()
