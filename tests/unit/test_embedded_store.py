"""The embedded store's writes, made safe for concurrent callers."""

from __future__ import annotations

import threading

import mongomock
import pymongo
import pytest

from policyhub.manager.database import serialize_embedded_writes


def test_a_duplicate_insert_is_never_visible_to_readers(monkeypatch):
    serialize_embedded_writes()
    collection = mongomock.MongoClient().db.pairs
    collection.create_index([("k", 1)], unique=True)
    collection.insert_one({"k": 1, "v": "first"})
    seen_while_checking = []
    check = mongomock.collection.Collection._ensure_uniques

    def ensure_uniques(self, document):
        # What a concurrent reader would find at this moment.
        seen_while_checking.append(self.count_documents({"k": document["k"]}))
        return check(self, document)

    monkeypatch.setattr(mongomock.collection.Collection, "_ensure_uniques", ensure_uniques)
    with pytest.raises(pymongo.errors.BulkWriteError) as error:
        collection.insert_many([{"k": 2}, {"k": 1, "v": "second"}, {"k": 3}], ordered=False)
    assert [(e["index"], e["code"]) for e in error.value.details["writeErrors"]] == [(1, 11000)]
    assert seen_while_checking == [1, 1]
    assert sorted(d["k"] for d in collection.find()) == [1, 2, 3]


def test_two_compare_and_sets_on_one_version_cannot_both_win(monkeypatch):
    serialize_embedded_writes()
    collection = mongomock.MongoClient().db.versions
    collection.insert_one({"_id": "p", "etag": "v1", "writers": []})
    rival = threading.Thread(
        target=lambda: collection.find_one_and_update(
            {"_id": "p", "etag": "v1"}, {"$set": {"etag": "v2-rival"}, "$push": {"writers": "rival"}}
        )
    )
    find_one = mongomock.collection.Collection.find_one

    def find_one_then_let_the_rival_run(self, *args, **kwargs):
        found = find_one(self, *args, **kwargs)
        if not rival.is_alive() and rival.ident is None:
            rival.start()
            rival.join(timeout=0.5)  # without serialization the rival matches v1 here too
        return found

    monkeypatch.setattr(mongomock.collection.Collection, "find_one", find_one_then_let_the_rival_run)
    collection.find_one_and_update(
        {"_id": "p", "etag": "v1"}, {"$set": {"etag": "v2-mine"}, "$push": {"writers": "me"}}
    )
    rival.join(timeout=5)
    assert collection.find_one({"_id": "p"})["writers"] == ["me"]
