"""`scan --ray` on a simulated cluster of three real Ray nodes on this machine (ray.cluster_utils.Cluster):
one node is removed half way through a scan, and the scan still indexes every photo once, harms none,
and leaves an index that passes integrity_check."""

from __future__ import annotations

import importlib.util
import sqlite3

import pytest

from phototag.ages.model import load_model
from phototag.scan.cluster import RayOptions, require_ray
from phototag.scan.pipeline import ScanOptions, scan
from phototag.store.index import Index

from .conftest import group_photo, save_jpeg, tree_digest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="Ray is not installed: the cluster extra (uv sync --extra cluster)")
PHOTOS = 16


@pytest.fixture(scope="module")
def three_nodes():
    """A head and two workers, one CPU each, each its own raylet; the driver joins the head."""
    ray = require_ray()  # as a scan imports it
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


class _RemoveNodeHalfWay:
    """A progress bar that removes one worker node once half the photos are back."""

    total = 0

    def __init__(self, cluster, node) -> None:
        self.cluster, self.node, self.done, self.removed = cluster, node, 0, False

    def update(self, n: int) -> None:
        self.done += n
        if not self.removed and self.done >= PHOTOS // 2:
            self.cluster.remove_node(self.node)
            self.removed = True

    def refresh(self) -> None:
        pass


def test_a_node_removed_half_way_through_a_scan(tmp_path, astronaut, three_nodes, reliability):
    import ray

    cluster, workers = three_nodes
    assert len([n for n in ray.nodes() if n["Alive"]]) == 3
    lib = tmp_path / "lib"
    for i in range(PHOTOS):
        save_jpeg(lib / f"p{i:02}.jpg", group_photo(astronaut, 1 + i % 2))
    before = tree_digest(lib)
    bar = _RemoveNodeHalfWay(cluster, workers[0])
    with Index(tmp_path / "i.db") as ix:
        summary = scan([lib], ix, load_model(), progress=bar,
                       options=ScanOptions(people=False, ray=RayOptions(address="auto", photos_per_call=1)))
    assert bar.removed
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    assert summary.exit_code == 0 and summary.tagged == PHOTOS and not summary.failures, summary.line()
    con = sqlite3.connect(tmp_path / "i.db")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = con.execute("SELECT path, status, face_count FROM photos").fetchall()
    assert len(rows) == len({r[0] for r in rows}) == PHOTOS and all(r[1] == "ok" for r in rows)
    assert con.execute("SELECT count(*) FROM faces").fetchone()[0] == sum(1 + i % 2 for i in range(PHOTOS))
    con.close()
    assert tree_digest(lib) == before
    reliability("a Ray node removed half way through a scan (3-node cluster)", 1,
                "finished on the other two, every photo indexed once, index integrity ok")
