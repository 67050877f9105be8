import sqlite3

import numpy as np
import pytest

from phototag.errors import IndexLockedError, PhototagError, SchemeError
from phototag.ages.groups import pack_distribution, unpack_distribution
from phototag.store.index import Index
from phototag.store.queries import QueryFilters, query


def peaked(age: int) -> np.ndarray:
    p = np.full(101, 1e-4)
    p[age] = 1.0
    return p / p.sum()


def add(index, path, taken, ages, scheme="ten"):
    from phototag.ages.groups import estimate, get_scheme

    s = get_scheme(scheme)
    faces = []
    for i, a in enumerate(ages):
        e = estimate(peaked(a), s)
        faces.append({"idx": i, "top": 0, "right": 10, "bottom": 10, "left": 0, "age": e.age, "age_low": e.low,
                      "age_high": e.high, "age_group": e.group, "group_prob": e.group_prob, "scheme": s.name,
                      "female_prob": None, "distribution": pack_distribution(peaked(a))})
    with index.transaction():
        index.upsert_photo({"path": path, "status": "ok", "taken_at": taken, "face_count": len(ages),
                            "model_id": "m", "scheme": scheme}, faces)


@pytest.fixture
def index(tmp_path):
    with Index(tmp_path / "i.db") as ix:
        add(ix, "/p/2019/a.jpg", "2019-06-01T10:00:00", [3, 35])
        add(ix, "/p/2019/b.jpg", "2019-07-01T10:00:00", [70])
        add(ix, "/p/2020/c.jpg", "2020-01-01T10:00:00", [1, 2, 30])
        yield ix


def paths(rows):
    return sorted({r["path"] for r in rows})


def test_wal_mode_and_foreign_keys(index):
    assert index.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with index.transaction():
        index.conn.execute("DELETE FROM photos WHERE path = '/p/2019/b.jpg'")
    assert index.conn.execute("SELECT count(*) FROM faces").fetchone()[0] == 5  # cascade


def test_filters(index):
    assert paths(query(index, QueryFilters(groups=("Toddler",)))) == ["/p/2019/a.jpg", "/p/2020/c.jpg"]
    assert paths(query(index, QueryFilters(min_age=60))) == ["/p/2019/b.jpg"]
    assert paths(query(index, QueryFilters(since="2019-06-15", until="2019-12-31"))) == ["/p/2019/b.jpg"]
    assert paths(query(index, QueryFilters(path_glob="*/2020/*"))) == ["/p/2020/c.jpg"]
    assert paths(query(index, QueryFilters(min_faces=3))) == ["/p/2020/c.jpg"]
    assert [r["age_group"] for r in query(index, QueryFilters(groups=("baby", "senior")))] == ["Senior", "Baby"]


def test_regroup_under_another_scheme_without_the_model(index):
    rows = query(index, QueryFilters(scheme="three", groups=("Old",)))
    assert [(r["path"], r["age_group"], r["scheme"]) for r in rows] == [("/p/2019/b.jpg", "Old", "three")]


def test_unknown_group_is_an_error_naming_the_groups(index):
    with pytest.raises(SchemeError, match="unknown group 'Kid' in scheme three \\(groups: Young, Middle, Old\\)"):
        query(index, QueryFilters(scheme="three", groups=("Kid",)))


def test_hostile_filter_strings_are_only_data(index):
    evil = "'; DROP TABLE photos; --"
    assert query(index, QueryFilters(path_glob=evil)) == []
    for dates in ({"since": evil}, {"until": evil}):  # not dates: refused before any SQL
        with pytest.raises(PhototagError, match="is not a date: use YYYY-MM-DD"):
            query(index, QueryFilters(**dates))
    assert index.conn.execute("SELECT count(*) FROM photos").fetchone()[0] == 3


def test_distribution_blob_round_trip():
    p = peaked(42)
    assert np.allclose(unpack_distribution(pack_distribution(p)), p, atol=1e-3)
    assert len(pack_distribution(p)) == 202


def test_only_one_scan_holds_the_lock(tmp_path):
    a, b = Index(tmp_path / "x.db"), Index(tmp_path / "x.db")
    a.lock()
    with pytest.raises(IndexLockedError, match="another phototag scan is using"):
        b.lock(wait=0.3)
    a.unlock()
    b.lock()
    a.close(), b.close()


def test_a_reader_sees_only_committed_photos(tmp_path):
    with Index(tmp_path / "w.db") as writer:
        writer.conn.execute("BEGIN IMMEDIATE")
        writer.upsert_photo({"path": "/x.jpg", "status": "ok", "face_count": 0}, [])
        reader = sqlite3.connect(tmp_path / "w.db")
        assert reader.execute("SELECT count(*) FROM photos").fetchone()[0] == 0
        writer.conn.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM photos").fetchone()[0] == 1
        reader.close()
