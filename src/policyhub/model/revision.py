"""A per-domain revision counter, bumped by every write that can change a decision.

Every server process compares it with the revision its cached evaluation index was built
from, so a write through any process is seen by the next check in every process.
"""

from mongoengine import DictField, Document, IntField, StringField


class RevisionDocument(Document):
    domain_id = StringField(required=True)
    revision = IntField(default=0)
    # mark -> until (epoch seconds): writes of several documents under way, which readers wait
    # for (see RevisionManager.begin_write)
    writes = DictField()
    # how many of those have landed
    landed = IntField(default=0)

    meta = {
        "collection": "revision",
        "auto_create_index": False,
        "indexes": [{"fields": ["domain_id"], "unique": True, "name": "domain_id"}],
    }
