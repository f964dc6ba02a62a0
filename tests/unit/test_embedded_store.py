"""The embedded store's writes, made safe for concurrent callers."""

from __future__ import annotations

import copy
import datetime
import functools
import random
import re
import sys
import threading
import time

import mongomock
import mongomock.aggregate
import mongomock.filtering
import mongomock.helpers
import pymongo
import pytest

from policyhub.manager import embedded_index
from policyhub.manager.database import serialize_embedded_writes
from policyhub.manager.embedded_index import index_embedded_store


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


# -- hash indexes --------------------------------------------------------------------------------
# Every result of the indexed store is compared with mongomock's own scan of the same documents:
# a twin collection whose index lookups are switched off answers by scanning.

UTC = datetime.timezone.utc
MOMENT = datetime.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
SCALARS = [None, 0, 1, 1.0, True, False, 2, "x", "y", "", MOMENT, MOMENT.replace(tzinfo=None), float("nan")]


def a_value(rng: random.Random):
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(SCALARS)
    if roll < 0.75:
        return [rng.choice(SCALARS) for _ in range(rng.randrange(0, 4))]
    if roll < 0.85:
        return {"c": rng.choice(SCALARS)}
    if roll < 0.9:
        return [{"c": rng.choice(SCALARS)}, [rng.choice(SCALARS)]]
    return {"$missing": True}


def a_document(rng: random.Random) -> dict:
    document = {}
    for key in ("a", "b", "u"):
        value = a_value(rng)
        if value != {"$missing": True}:
            document[key] = value
    nested = a_value(rng)
    if nested != {"$missing": True}:
        document["n"] = {"c": nested} if rng.random() < 0.8 else nested
    if rng.random() < 0.3:
        document["_id"] = rng.randrange(30)
    return document


def a_filter(rng: random.Random) -> dict:
    def condition():
        roll = rng.random()
        if roll < 0.5:
            return rng.choice(SCALARS)
        if roll < 0.65:
            return {"$eq": rng.choice(SCALARS)}
        if roll < 0.8:
            return {"$in": [rng.choice(SCALARS) for _ in range(rng.randrange(0, 4))]}
        if roll < 0.9:
            return [rng.choice(SCALARS)]
        return {"$exists": rng.random() < 0.5}

    keys = rng.sample(["a", "b", "u", "n.c", "_id"], rng.randrange(1, 4))
    fixed = {key: condition() for key in keys}
    if rng.random() < 0.2:
        return {"$and": [fixed, {"b": {"$ne": rng.choice(SCALARS)}}]}
    if rng.random() < 0.1:
        return {"$or": [fixed, {"a": 2}]}
    return fixed


def an_update(rng: random.Random) -> dict:
    roll = rng.random()
    key = rng.choice(["a", "b", "u", "n.c", "n"])
    if roll < 0.6:
        return {"$set": {key: a_value(rng) if rng.random() < 0.8 else rng.choice(SCALARS)}}
    if roll < 0.8:
        return {"$unset": {key: ""}}
    return {"$push": {"a": rng.choice(SCALARS)}}


def outcome(action):
    try:
        result = action()
    except Exception as error:  # mongomock fails some updates with plain exceptions, on both sides alike
        return type(error).__name__
    for attribute in ("inserted_id", "inserted_ids", "deleted_count", "matched_count", "upserted_id"):
        if hasattr(result, attribute):
            return attribute, getattr(result, attribute)
    return result


def without_object_ids(value) -> str:
    """Generated ObjectIds differ between the two sides; everything else must not."""
    return re.sub(r"ObjectId\('[0-9a-f]+'\)", "ObjectId", repr(value))


def same(first, second) -> bool:
    """Equality where NaN equals NaN (a NaN stored on both sides)."""
    return repr(first) == repr(second)


def twins(name: str):
    index_embedded_store()
    serialize_embedded_writes()
    client = mongomock.MongoClient(tz_aware=True)
    indexed, scanned = client.db[f"{name}_indexed"], client.db[f"{name}_scanned"]
    for collection in (indexed, scanned):
        collection.create_index([("a", 1), ("b", 1)])
        collection.create_index([("n.c", 1)])
        collection.create_index([("u", 1)], unique=True)
        collection.find_one({})  # creates the store
    scanned_indexes = embedded_index._indexes(scanned._store)
    scanned_indexes.candidates = lambda filter: None  # the scan, as mongomock does it
    return indexed, scanned


def operation(rng: random.Random):
    doc, filter_, update = a_document(rng), a_filter(rng), an_update(rng)
    kind = rng.choice(
        [
            "insert_one",
            "insert_many",
            "update_one",
            "update_many",
            "upsert",
            "replace_one",
            "find_one_and_update",
            "delete_one",
            "delete_many",
            "bulk_write",
        ]
    )
    many = [a_document(rng) for _ in range(3)]

    def run(collection):
        doc_copy, many_copy = copy.deepcopy(doc), copy.deepcopy(many)
        if kind == "insert_one":
            return collection.insert_one(doc_copy)
        if kind == "insert_many":
            return collection.insert_many(many_copy, ordered=False)
        if kind == "update_one":
            return collection.update_one(filter_, update)
        if kind == "update_many":
            return collection.update_many(filter_, update)
        if kind == "upsert":
            return collection.update_one(filter_, update, upsert=True)
        if kind == "replace_one":
            doc_copy.pop("_id", None)
            return collection.replace_one(filter_, doc_copy, upsert=rng_flag)
        if kind == "find_one_and_update":
            return collection.find_one_and_update(filter_, update, return_document=pymongo.ReturnDocument.AFTER)
        if kind == "delete_one":
            return collection.delete_one(filter_)
        if kind == "delete_many":
            return collection.delete_many(filter_)
        return collection.bulk_write(
            [
                pymongo.InsertOne(doc_copy),
                pymongo.UpdateMany(filter_, update),
                pymongo.DeleteOne({"a": 1}),
                pymongo.ReplaceOne({"b": "x"}, {"b": "y", "a": [1, 2]}, upsert=True),
            ],
            ordered=False,
        )

    rng_flag = rng.random() < 0.5
    return kind, run


@pytest.mark.parametrize("seed", range(25))
def test_the_indexed_store_answers_as_the_scan_does(seed):
    rng = random.Random(seed)
    indexed, scanned = twins(f"prop{seed}")
    for step in range(60):
        kind, run = operation(rng)
        first, second = outcome(functools.partial(run, indexed)), outcome(functools.partial(run, scanned))
        assert without_object_ids(first) == without_object_ids(second), (step, kind, first, second)
        assert same(list(indexed.find({}, {"_id": 0})), list(scanned.find({}, {"_id": 0}))), (step, kind)
        for _ in range(8):
            query = a_filter(rng)
            assert same(list(indexed.find(query, {"_id": 0})), list(scanned.find(query, {"_id": 0}))), (step, query)
            assert indexed.count_documents(query) == scanned.count_documents(query), (step, query)
            pipeline = [{"$match": query}, {"$project": {"_id": 0, "a": 1, "n": 1}}]
            assert same(list(indexed.aggregate(pipeline)), list(scanned.aggregate(pipeline))), (step, query)


def test_a_point_read_and_a_unique_check_do_not_scan(monkeypatch):
    index_embedded_store()
    serialize_embedded_writes()
    collection = mongomock.MongoClient().db.points
    collection.create_index([("domain_id", 1), ("policy_id", 1), ("deleted_at", 1)], unique=True)
    collection.insert_many([{"domain_id": "d", "policy_id": f"p{i}", "deleted_at": None} for i in range(200)])
    matched = []
    applies = mongomock.filtering.filter_applies

    def counting(filter, document):
        matched.append(document)
        return applies(filter, document)

    monkeypatch.setattr(mongomock.filtering, "filter_applies", counting)
    monkeypatch.setattr(mongomock.collection, "filter_applies", counting)  # the scan's own import
    assert collection.find_one({"domain_id": "d", "policy_id": "p7", "deleted_at": None})["policy_id"] == "p7"
    assert collection.count_documents({"domain_id": "d", "policy_id": "p8"}) == 1
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        collection.insert_one({"domain_id": "d", "policy_id": "p9"})
    # A handful of documents matched, not the 200 of the collection per call.
    assert len(matched) <= 10
    matched.clear()
    assert collection.count_documents({"policy_id": "p9"}) == 1  # no index starts with policy_id
    assert len(matched) == 200


def race(stop: threading.Event, threads: list[threading.Thread], seconds: float = 1.5) -> None:
    """Runs the threads for `seconds`, switching between them as often as possible (to meet every
    window between a writer's steps), then sets `stop` and waits for them."""
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        time.sleep(seconds)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        sys.setswitchinterval(switch)


def test_readers_never_miss_a_document_whose_key_stays_while_others_are_written():
    index_embedded_store()
    serialize_embedded_writes()
    collection = mongomock.MongoClient().db.churn
    collection.create_index([("g", 1)])
    collection.insert_many([{"_id": i, "g": "stable", "n": 0} for i in range(20)])
    stop, failures = threading.Event(), []

    def write(offset):
        i = 0
        while not stop.is_set():
            i += 1
            collection.update_many({"g": "stable"}, {"$inc": {"n": 1}})  # re-indexes each, same key
            collection.insert_one({"_id": f"c{offset}-{i}", "g": f"churn-{i % 3}"})
            collection.update_one({"_id": f"c{offset}-{i}"}, {"$set": {"g": ["churn", i]}})
            collection.delete_many({"g": "churn"})

    def read():
        while not stop.is_set():
            found = [doc["_id"] for doc in collection.find({"g": "stable"})]
            if found != list(range(20)):
                failures.append(found)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    threads += [threading.Thread(target=read) for _ in range(3)]
    race(stop, threads)
    assert failures == []
    assert collection.count_documents({"g": "churn"}) == 0
    assert [doc["_id"] for doc in collection.find({"g": "stable"})] == list(range(20))


def test_expired_documents_stay_until_the_sweep_purges_them():
    index_embedded_store()
    collection = mongomock.MongoClient(tz_aware=True).db.ttl
    collection.create_index([("purge_at", 1)], expireAfterSeconds=0)
    past = datetime.datetime.now(UTC) - datetime.timedelta(days=1)
    collection.insert_many([{"k": 1, "purge_at": past}, {"k": 2, "purge_at": past + datetime.timedelta(days=2)}])
    # mongomock would delete the first on this read (walking every document on every read).
    assert collection.count_documents({}) == 2
    assert collection.delete_many({"purge_at": {"$lte": datetime.datetime.now(UTC)}}).deleted_count == 1
    assert [doc["k"] for doc in collection.find()] == [2]


# -- pipeline heads on the stored documents --------------------------------------------------------
# A pipeline's sort, page, count and group after its leading $match run on references to the stored
# documents; every result is compared, exactly (types, order, field order), with mongomock's own
# aggregate of the twin that scans.

SORT_PATHS = ["a", "b", "u", "n", "n.c", "_id", "missing"]
GROUP_KEYS = [
    None,
    0,
    "",
    "$a",
    "$b",
    "$u",
    "$n",
    "$n.c",
    "$missing",
    {"x": "$a"},
    {"x": "$a", "y": "$u"},
    {"y": "$n.c", "z": "$missing"},
]
ACCUMULATORS = ["$sum", "$avg", "$min", "$max", "$first", "$last", "$push", "$addToSet", "$mergeObjects"]
OPERANDS = [1, 2.5, None, "text", "$a", "$b", "$u", "$n", "$n.c", "$missing", {"x": "$a", "y": "$u"}, {"x": "$missing"}]


def a_pipeline(rng: random.Random) -> list[dict]:
    match = {"$match": a_filter(rng) if rng.random() < 0.8 else {}}
    shape = rng.choice(["page", "page", "count", "group", "group", "group"])
    if shape == "count":
        return [match, {"$count": "n"}]
    if shape == "group":
        group: dict = {"_id": rng.choice(GROUP_KEYS)}
        for i in range(rng.randrange(0, 4)):
            group[f"f{i}"] = {rng.choice(ACCUMULATORS): rng.choice(OPERANDS)}
        stages = [match, {"$group": group}]
        if rng.random() < 0.3:
            stages.append({"$sort": {"_id": 1}})
        return stages
    keys = rng.sample(SORT_PATHS, rng.randrange(1, 4))
    stages = [match, {"$sort": {key: rng.choice([1, -1]) for key in keys}}]
    if rng.random() < 0.7:
        stages.append({"$skip": rng.randrange(0, 6)})
    if rng.random() < 0.8:
        stages.append({"$limit": rng.randrange(1, 10)})
    if rng.random() < 0.3:
        stages.append({"$project": {"_id": 0, "a": 1, "n": 1}})
    if rng.random() < 0.2:
        stages.append({"$count": "n"})
    return stages


def mongomock_aggregate(collection, pipeline):
    """mongomock's own Collection.aggregate (every document copied, then each stage in turn)."""
    return mongomock.aggregate.process_pipeline(list(collection.find()), collection.database, pipeline, None)


@pytest.mark.parametrize("seed", range(20))
def test_pipeline_heads_answer_as_mongomock_does(seed):
    rng = random.Random(1000 + seed)
    indexed, scanned = twins(f"heads{seed}")
    for step in range(25):
        for _ in range(3):
            kind, run = operation(rng)
            outcome(functools.partial(run, indexed)), outcome(functools.partial(run, scanned))
        for _ in range(12):
            pipeline = a_pipeline(rng)
            first = outcome(lambda pipeline=pipeline: list(indexed.aggregate(copy.deepcopy(pipeline))))
            second = outcome(lambda pipeline=pipeline: list(mongomock_aggregate(scanned, copy.deepcopy(pipeline))))
            assert without_object_ids(first) == without_object_ids(second), (step, pipeline)


def test_groups_follow_mongomocks_runs_of_equal_keys():
    """mongomock groups runs of Python-equal keys in BSON order: True and 1 meet when nothing sorts
    between them (numbers before booleans), and stay apart when a string does."""
    indexed, scanned = twins("runs")
    pipeline = [{"$match": {}}, {"$group": {"_id": "$k", "n": {"$sum": 1}, "v": {"$push": "$v"}}}]
    for documents in (
        [{"k": True, "v": 1}, {"k": 1, "v": 2}, {"k": 1.0, "v": 3}, {"k": True, "v": 4}],
        [{"k": True, "v": 1}, {"k": 1, "v": 2}, {"k": "s", "v": 3}, {"v": 4}, {"k": None, "v": 5}],
        [{"k": [1, "a"], "v": 1}, {"k": [1.0, "a"], "v": 2}, {"k": [True], "v": 3}, {"k": [1], "v": 4}],
    ):
        for collection in (indexed, scanned):
            collection.delete_many({})
            collection.insert_many([{**document, "u": i} for i, document in enumerate(documents)])  # u is unique
        assert without_object_ids(list(indexed.aggregate(pipeline))) == without_object_ids(
            list(mongomock_aggregate(scanned, pipeline))
        )


def test_a_page_copies_its_documents_only_and_an_answered_filter_checks_none(monkeypatch):
    index_embedded_store()
    serialize_embedded_writes()
    collection = mongomock.MongoClient(tz_aware=True).db.pages
    collection.create_index([("domain_id", 1), ("deleted_at", 1), ("labels", 1)])
    collection.insert_many(
        [{"domain_id": "d", "deleted_at": None, "labels": [f"l{i % 2}"], "at": MOMENT, "i": i} for i in range(400)]
    )
    collection.insert_one({"domain_id": "d", "labels": ["l0", ["nested"]], "i": 400})  # irregular: checked
    checked, copied = [], []
    applies, aware = mongomock.filtering.filter_applies, mongomock.helpers.make_datetime_timezone_aware_in_document
    monkeypatch.setattr(mongomock.filtering, "filter_applies", lambda f, d: checked.append(d) or applies(f, d))

    def copying(value):
        if isinstance(value, dict) and "domain_id" in value:
            copied.append(value["i"])
        return aware(value)

    monkeypatch.setattr(mongomock.helpers, "make_datetime_timezone_aware_in_document", copying)
    match = {"$match": {"domain_id": "d", "deleted_at": None, "labels": {"$eq": "l0"}}}
    page = list(collection.aggregate([match, {"$sort": {"i": -1, "_id": 1}}, {"$skip": 2}, {"$limit": 3}]))
    assert [doc["i"] for doc in page] == [396, 394, 392]
    assert page[0]["at"] == MOMENT.replace(microsecond=123000)  # as a find returns it: stored to the ms, aware
    assert page[0]["at"].tzinfo is not None
    assert sorted(copied) == [392, 394, 396]
    assert [doc["i"] for doc in checked] == [400]
    assert list(collection.aggregate([match, {"$count": "n"}])) == [{"n": 201}]
    stat = list(collection.aggregate([match, {"$group": {"_id": "$deleted_at", "n": {"$sum": 1}}}]))
    assert stat == [{"n": 201, "_id": None}]
    assert sorted(copied) == [392, 394, 396]


def test_pipeline_heads_read_under_concurrent_writes():
    """Readers take no lock. Documents whose keys stay are always found, in order and counted,
    while other documents are written, some of them under the same keys."""
    index_embedded_store()
    serialize_embedded_writes()
    collection = mongomock.MongoClient(tz_aware=True).db.heads_churn
    collection.create_index([("g", 1)])
    collection.insert_many([{"_id": i, "g": "stable", "k": i, "n": 0} for i in range(20)])
    stop, failures = threading.Event(), []
    page = [{"$match": {"g": "stable"}}, {"$sort": {"k": 1, "_id": 1}}, {"$skip": 1}, {"$limit": 5}]
    count = [{"$match": {"g": "stable"}}, {"$count": "n"}]
    group = [{"$match": {"g": "stable"}}, {"$group": {"_id": {"low": "$low"}, "n": {"$sum": 1}}}]

    def write(offset):
        i = 0
        while not stop.is_set():
            i += 1
            collection.update_many({"g": "stable"}, {"$inc": {"n": 1}})  # in place, keys kept
            collection.insert_one({"_id": f"c{offset}-{i}", "g": "stable", "k": 100 + i, "low": False})
            collection.update_one({"_id": f"c{offset}-{i}"}, {"$set": {"g": "churn"}})
            collection.delete_many({"g": "churn"})

    def read():
        while not stop.is_set():
            found = list(collection.aggregate(page))
            if [doc["_id"] for doc in found] != [1, 2, 3, 4, 5] or any(doc["g"] != "stable" for doc in found):
                failures.append(("page", found))
            counted = list(collection.aggregate(count))[0]["n"]
            if not 20 <= counted <= 22:
                failures.append(("count", counted))
            groups = {tuple(doc["_id"].items()): doc["n"] for doc in collection.aggregate(group)}
            if groups.get(()) != 20 or not 0 <= groups.get((("low", False),), 0) <= 2:
                failures.append(("group", groups))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    race(stop, threads)
    assert failures == []
    assert list(collection.aggregate(count)) == [{"n": 20}]
